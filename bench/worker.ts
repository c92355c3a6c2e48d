/**
 * The bench Worker: the limits every scenario is compared with, measured in the same run and the
 * same local runtime (PERFORMANCE.md). Nothing here validates, authenticates or logs; that is
 * the point. Timing is done by the caller (workerd's clock does not advance during compute).
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../migrations/do/migrations.js';

interface Env {
  RAW: DurableObjectNamespace<RawSqliteDO>;
  RAW_BLOBS: R2Bucket;
}

/** The workspace object's own schema (same migrations), written and read with bare SQL. */
export class RawSqliteDO extends DurableObject<Env> {
  #next = 1;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      migrate(drizzle(ctx.storage), migrations);
      this.#next = (ctx.storage.sql.exec<{ v: number | null }>('SELECT max(server_version) AS v FROM change_log').one().v ?? 0) + 1;
    });
  }

  /**
   * What a push writes per op (a change-log row and a materialized row), `batch` ops per
   * transaction. Writes with no `await` between them coalesce into one implicit transaction, so
   * the call commits once, at its end; `durableEach` awaits `storage.sync()` after each batch
   * instead, so every batch is on disk before the next, as each push message must be before it is
   * answered (docs/performance.md "The bare transport").
   */
  async write(count: number, payloadBytes: number, batch = 100, durableEach = false): Promise<number> {
    const sql = this.ctx.storage.sql;
    const filler = 'x'.repeat(Math.max(0, payloadBytes - 120));
    for (let done = 0; done < count; done += batch) {
      if (durableEach && done > 0) await this.ctx.storage.sync();
      this.ctx.storage.transactionSync(() => {
        for (let i = 0; i < Math.min(batch, count - done); i++) {
          const v = this.#next++;
          const pk = `m${v}`;
          const opId = crypto.randomUUID();
          const payload = `{"id":"${pk}","thread_id":"t1","role":"user","index":${v},"order_key":"a${v}","deleted":false,"created_at":1,"updated_at":1,"clock":1,"data":"${filler}"}`;
          sql.exec(
            'INSERT INTO change_log (server_version, op_id, table_name, pk, op, payload, clock, hlc, device_id, user_id, fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            v,
            opId,
            'messages',
            pk,
            'put',
            payload,
            1,
            '000001795000000:000000:bench',
            'bench',
            'u1',
            'f'.repeat(64),
            Date.now(),
          );
          sql.exec(
            'INSERT INTO rows (table_name, pk, payload, clock, hlc, op_id, server_version, deleted, deleted_at, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL) ON CONFLICT(table_name, pk) DO UPDATE SET payload = excluded.payload',
            'messages',
            pk,
            payload,
            1,
            '000001795000000:000000:bench',
            opId,
            v,
          );
        }
      });
    }
    return this.#next - 1;
  }

  /** Pages over the whole log in version order, `limit` rows per query; returns rows read. */
  scan(limit = 1000): number {
    const sql = this.ctx.storage.sql;
    let cursor = 0;
    let total = 0;
    for (;;) {
      const rows = sql
        .exec<{ server_version: number }>(
          'SELECT server_version, table_name, pk, op, payload, clock, hlc, device_id, op_id FROM change_log WHERE server_version > ? ORDER BY server_version LIMIT ?',
          cursor,
          limit,
        )
        .toArray();
      if (!rows.length) return total;
      total += rows.length;
      cursor = rows[rows.length - 1]!.server_version;
    }
  }

  /**
   * One page of the log as the wire text a pull page carries (the same fields and bytes per row,
   * built by SQLite around the stored payload), with nothing else: no authorization, compaction,
   * rate limit or metering. What the bare transport below serves.
   */
  page(cursor: number, limit: number): { text: string; next: number; more: boolean } {
    const rows = [
      ...this.ctx.storage.sql
        .exec(
          `SELECT server_version, '{"serverVersion":' || server_version || ',"tableName":"' || table_name || '","pk":"' || pk || '","op":"' || op
          || '","stamp":{"deviceId":"' || device_id || '","opId":"' || op_id || '","hlc":"' || hlc || '","clock":' || clock || '},"payload":' || payload || '}'
          FROM change_log WHERE server_version > ? ORDER BY server_version LIMIT ?`,
          cursor,
          limit,
        )
        .raw<[number, string]>(),
    ];
    const next = rows.length ? rows[rows.length - 1]![0] : cursor;
    return { text: rows.map((r) => r[1]).join(','), next, more: rows.length === limit };
  }

  /** A pull stream over a hibernatable socket, the socket pull's bare transport: pages of `page`, `window` ahead of the client's acks. */
  override async fetch(): Promise<Response> {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  #stream = { cursor: 0, unacked: 0, window: 4, done: true };

  override webSocketMessage(ws: WebSocket, data: string | ArrayBuffer) {
    const msg = JSON.parse(String(data)) as { type: 'pull' | 'ack'; cursor: number; window?: number };
    if (msg.type === 'pull') this.#stream = { cursor: msg.cursor, unacked: 0, window: msg.window ?? 4, done: false };
    else this.#stream.unacked--;
    const stream = this.#stream;
    while (!stream.done && stream.unacked < stream.window) {
      const page = this.page(stream.cursor, 1000);
      ws.send(`{"type":"changes","id":"cold","changes":[${page.text}],"nextCursor":${page.next},"hasMore":${page.more}}`);
      stream.cursor = page.next;
      stream.unacked++;
      stream.done = !page.more;
    }
  }

  rows(): number {
    return this.ctx.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM change_log').one().n;
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === '/empty') {
      // A bare round trip; with a body, the body is read (what any JSON route must do).
      if (request.method === 'POST') await request.text();
      const size = Number(url.searchParams.get('size') ?? 0);
      return size ? new Response('x'.repeat(size), { headers: { 'content-type': 'application/json' } }) : Response.json({});
    }
    if (url.pathname === '/raw-pull') {
      // The HTTP pull's bare transport: a page of the raw log (RawSqliteDO.page) through a bare Worker.
      const stub = env.RAW.getByName(url.searchParams.get('name')!);
      if (request.headers.get('upgrade') === 'websocket') return stub.fetch(request);
      const page = await stub.page(Number(url.searchParams.get('cursor')), Number(url.searchParams.get('limit') ?? 1000));
      return new Response(`{"changes":[${page.text}],"nextCursor":${page.next},"hasMore":${page.more}}`, {
        headers: { 'content-type': 'application/json' },
      });
    }
    if (url.pathname === '/r2') {
      // Raw R2 through the binding: put `size` bytes made here, then read them back.
      const size = Number(url.searchParams.get('size'));
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65_536)));
      const key = `raw/${crypto.randomUUID()}`;
      const t0 = performance.now();
      await env.RAW_BLOBS.put(key, bytes);
      const t1 = performance.now();
      const back = await env.RAW_BLOBS.get(key);
      await back!.arrayBuffer();
      const t2 = performance.now();
      await env.RAW_BLOBS.delete(key);
      return Response.json({ putMs: t1 - t0, getMs: t2 - t1 });
    }
    return new Response('not found', { status: 404 });
  },
};
