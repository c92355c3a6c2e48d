/**
 * WorkspaceDO: one Durable Object per workspace, addressed by workspace id.
 *
 * It is the workspace's transaction boundary: each RPC runs the engine (engine.ts) inside one
 * `transactionSync` with no `await` inside, so versions are gapless and contiguous without
 * locks, and the output gate holds the reply until the write is durable. Everything else (auth,
 * validation, fingerprints) happens in the Worker before the call. After a commit that
 * allocated versions, every connected socket is poked (WebSocket Hibernation API, so idle
 * sockets cost nothing). An alarm runs retention GC.
 *
 * RPC methods return `{ ok: false, status, code, message }` instead of throwing for expected
 * failures: thrown errors lose their type across RPC.
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../../migrations/do/migrations.js';
import { loadConfig } from '../config';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import * as engine from './engine';
import * as blobs from '../storage/engine';
import { runBlobGc } from '../storage/gc';
import { archiveRows, type ArchivedEntry } from '../archive/archive';
import { recordAudit } from '../archive/audit';
import { FixedWindowLimiter, type SyncLimitName } from './limiter';
import { membershipOf } from '../workspaces/store';
import { SNAPSHOT_TTL_MS, readPageToken, signPageToken } from './page-token';
import { canonicalJson, entryBytes, REFERENCING_TABLES, referencedHashes, type PreparedOp, type TableName } from './protocol';

export interface PingResult {
  ok: true;
  /** Number of schema migrations applied to this object's database. */
  migrations: number;
}

export type Failure = { ok: false; status: 400 | 403 | 409 | 410 | 413 | 429 | 501 | 503; code: string; message: string; retryAfter?: number };

export type PushReply = { ok: true; results: engine.PushResult[]; serverVersion: number };
export type PullReply = { ok: true; changesJson: string; count: number; nextCursor: number; hasMore: boolean; oldestRetainedVersion: number; requiresSnapshot: boolean };
/** `itemsJson`: the page's SnapshotItem[] as JSON text, spliced into the response by the route. */
export type SnapshotReply = { ok: true; workspaceId: string; snapshotId: string; highWatermark: number; itemsJson: string; nextPageToken: string | null };
export type GcReply = { ok: true; deletedCount: number };

/** Who is calling and which limit applies; the Worker has already checked membership and role. */
export interface Caller {
  workspaceId: string;
  userId: string;
  limit: { name: SyncLimitName; perMinute: number };
}

const RESTORING: Failure = { ok: false, status: 503, code: 'restoring', message: 'The workspace is being restored; try again shortly', retryAfter: 5 };

/** One member cannot take all of the object's WebSocket slots. */
export const MAX_SOCKETS_PER_USER = 20;
/** A poke carries its commit's changes up to this many payload bytes (and twice that in JSON). */
export const POKE_CHANGE_BYTES = 64 * 1024;
/** Above this many distinct users online, a commit touching notifications pokes without changes. */
const POKE_MAX_USERS = 32;
/** How long a socket's membership confirmation lets its pokes carry changes. */
export const SOCKET_REVERIFY_MS = 10 * 60 * 1000;

/** What each accepted socket carries through hibernation. */
interface SocketAttachment {
  userId: string;
  sessionId: string | null;
  /** When D1 last confirmed the membership (ms); 0: not yet. */
  verifiedAt: number;
}
const TICKET_NONCE_MARGIN_MS = 5 * 60 * 1000;

/** How often the alarm runs retention GC while the workspace has anything to collect. */
export const GC_INTERVAL_MS = 6 * 3600 * 1000;

export class WorkspaceDO extends DurableObject<Bindings> {
  readonly #sql: SqlStorage;
  readonly #limiter = new FixedWindowLimiter();
  /** Set by pitrPrepare: this instance is about to be rewound and serves nothing more (503). */
  #restoring = false;
  /** Sockets whose membership check is in flight (one at a time each). */
  #verifying = new WeakSet<WebSocket>();
  /** This instance, in memory only: pitrFinish uses it to tell that a restart really happened. */
  readonly #instance = crypto.randomUUID();
  /** Archiving awaits R2, which lets other events in: runs are chained so manifests stay consistent. */
  #archiving: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    const db = drizzle(ctx.storage);
    // Returned, so a failing migration rejects blockConcurrencyWhile and resets the object.
    void ctx.blockConcurrencyWhile(async () => migrate(db, migrations));
    // Answered by the runtime without waking a hibernated object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
  }

  /** Liveness probe for deep health checks: proves the object starts and its database answers. */
  ping(): PingResult {
    const row = this.#sql.exec<{ n: number }>('SELECT count(*) AS n FROM __drizzle_migrations').one();
    return { ok: true, migrations: row.n };
  }

  #limited(caller: Caller): Failure | null {
    if (this.#restoring) return RESTORING;
    const verdict = this.#limiter.take(`${caller.limit.name}:${caller.userId}`, caller.limit.perMinute);
    if (verdict.ok) return null;
    return { ok: false, status: 429, code: 'rate_limited', message: `Rate limit exceeded. Retry after ${verdict.retryAfterSeconds}s`, retryAfter: verdict.retryAfterSeconds };
  }

  /** `quotaBytes`: OR3_SYNC_WORKSPACE_QUOTA_BYTES, the cap on this workspace's stored sync data. */
  async push(caller: Caller, ops: PreparedOp[], quotaBytes: number): Promise<PushReply | Failure> {
    const limited = this.#limited(caller);
    if (limited) return limited;
    const now = Date.now();
    const outcome = this.ctx.storage.transactionSync(() => engine.applyPush(this.#sql, ops, caller.userId, now, quotaBytes));
    if ('quotaExceeded' in outcome) {
      const { usedBytes, batchBytes } = outcome.quotaExceeded;
      return {
        ok: false,
        status: 413,
        code: 'quota_exceeded',
        message: `This workspace's synced data is at its quota (${usedBytes} of ${quotaBytes} bytes; this push needs ${batchBytes} more). Delete rows, or ask the operator to raise OR3_SYNC_WORKSPACE_QUOTA_BYTES`,
      };
    }
    for (const conflict of outcome.conflicts) {
      logEvent('info', 'sync_conflict', { workspaceId: caller.workspaceId, tableName: conflict.tableName, pk: conflict.pk, winner: conflict.winner, loser: conflict.loser });
    }
    if (outcome.allocated > 0) {
      // Synchronously after the transaction: the range holds exactly this push's changes.
      this.#poke(outcome.serverVersion - outcome.allocated, outcome.serverVersion, ops.some((op) => op.tableName === 'notifications'));
      await this.#ensureAlarm();
    }
    return { ok: true, results: outcome.results, serverVersion: outcome.serverVersion };
  }

  pull(caller: Caller, input: { cursor: number; limit: number; tables?: TableName[] }): PullReply | Failure {
    const limited = this.#limited(caller);
    if (limited) return limited;
    // A read: one implicit transaction is enough, and no await separates its statements.
    return { ok: true, ...engine.pull(this.#sql, { ...input, userId: caller.userId }) };
  }

  updateCursor(caller: Caller, input: { deviceId: string; version: number }): { ok: true } | Failure {
    const limited = this.#limited(caller);
    if (limited) return limited;
    return this.ctx.storage.transactionSync(() => engine.updateCursor(this.#sql, { ...input, userId: caller.userId }, Date.now()));
  }

  async snapshot(caller: Caller, input: { pageSize: number; pageToken?: string; tables?: TableName[] }): Promise<SnapshotReply | Failure> {
    const limited = this.#limited(caller);
    if (limited) return limited;
    const key = this.#snapshotKey();
    let state: { snapshotId: string; highWatermark: number; after: [string, string] | null; expiresAt: number };
    if (input.pageToken) {
      const read = await readPageToken(key, input.pageToken);
      if (!read.ok) {
        return read.reason === 'expired'
          ? { ok: false, status: 410, code: 'snapshot_expired', message: 'This snapshot has expired; start a new one' }
          : { ok: false, status: 400, code: 'invalid_page_token', message: 'pageToken is not valid for this workspace' };
      }
      state = read.state;
    } else {
      // Rows read after this point may already include changes above the watermark; pulling
      // from the watermark re-applies them, and last-write-wins makes that harmless.
      state = { snapshotId: crypto.randomUUID(), highWatermark: engine.headVersion(this.#sql), after: null, expiresAt: Date.now() + SNAPSHOT_TTL_MS };
    }
    const page = engine.snapshotPage(this.#sql, { after: state.after, pageSize: input.pageSize, tables: input.tables, userId: caller.userId });
    const nextPageToken = page.next ? await signPageToken(key, { ...state, after: page.next }) : null;
    return { ok: true, workspaceId: caller.workspaceId, snapshotId: state.snapshotId, highWatermark: state.highWatermark, itemsJson: page.itemsJson, nextPageToken };
  }

  async gc(caller: Caller, input: { kind: 'tombstones' | 'change-log'; retentionSeconds: number }): Promise<GcReply | Failure> {
    const limited = this.#limited(caller);
    if (limited) return limited;
    const deletedCount = input.kind === 'tombstones' ? this.#collectTombstones(input.retentionSeconds) : (await this.collectChangeLog(input.retentionSeconds)).deleted;
    logEvent('info', 'sync_gc', { workspaceId: caller.workspaceId, userId: caller.userId, kind: input.kind, retentionSeconds: input.retentionSeconds, deletedCount });
    return { ok: true, deletedCount };
  }

  /** Tombstone GC in bounded transactions until there is nothing left to collect. */
  #collectTombstones(retentionSeconds: number): number {
    const cutoff = Date.now() - retentionSeconds * 1000;
    let total = 0;
    for (;;) {
      const step = this.ctx.storage.transactionSync(() => engine.gcTombstones(this.#sql, cutoff));
      total += step.deleted;
      if (step.done) return total;
    }
  }

  /**
   * Change-log GC: each eligible range is archived to R2 first and deleted only once the archive
   * write succeeded, so GC never loses history. An R2 failure leaves the rows in place (the next
   * run retries) and is reported as `archived: false`. `bucket` is a seam for failure tests.
   */
  collectChangeLog(retentionSeconds: number, bucket: R2Bucket = this.env.BLOBS): Promise<{ deleted: number; archived: boolean }> {
    const run = this.#archiving.then(async () => {
      const workspaceId = this.ctx.id.name;
      if (!workspaceId) throw new Error('workspace object has no name: cannot archive');
      const cutoff = Date.now() - retentionSeconds * 1000;
      let deleted = 0;
      for (;;) {
        const range = engine.prunableRange(this.#sql, cutoff);
        if (!range) return { deleted, archived: true };
        const rows = engine.changeLogRows(this.#sql, range.from, range.to);
        try {
          await archiveRows(bucket, workspaceId, rows);
        } catch (err) {
          logEvent('error', 'archive_failed', { workspaceId, from: range.from, to: range.to, message: err instanceof Error ? err.message : String(err) });
          return { deleted, archived: false };
        }
        deleted += this.ctx.storage.transactionSync(() => engine.pruneThrough(this.#sql, range.to));
        if (range.last) return { deleted, archived: true };
      }
    });
    this.#archiving = run.catch(() => undefined);
    return run;
  }

  /** Retention GC on the alarm, with OR3_SYNC_RETENTION_SECONDS. Idempotent: a retry deletes nothing twice. */
  override async alarm() {
    const config = loadConfig(this.env);
    if (!config.ok) {
      logEvent('error', 'sync_gc_skipped', { reason: 'configuration invalid' });
      return;
    }
    const retention = config.config.sync.retentionSeconds;
    const tombstones = this.#collectTombstones(retention);
    const changeLog = (await this.collectChangeLog(retention)).deleted;
    logEvent('info', 'sync_gc', { trigger: 'alarm', retentionSeconds: retention, tombstones, changeLog });
    if (tombstones + changeLog > 0) await recordAudit(this.env, 'sync.gc.run', { trigger: 'alarm', workspaceId: this.ctx.id.name, retentionSeconds: retention, tombstones, changeLog });
    // The same blob GC as POST /api/storage/gc/run, on this object's own methods.
    const workspaceId = this.ctx.id.name;
    if (workspaceId) {
      const storage = config.config.storage;
      const result = await runBlobGc(
        {
          bucket: this.env.BLOBS,
          workspaceId,
          start: async (i) => this.startBlobGc(i),
          finish: async (h) => this.finishBlobGc(h),
          markStrays: async (k, c) => this.markStrays(k, c),
        },
        { retentionSeconds: storage.gcRetentionSeconds, limit: 100, cooldownMs: 0 },
      );
      if (result.ok && result.deleted_count > 0) await recordAudit(this.env, 'storage.gc.run', { trigger: 'alarm', workspaceId, deleted: result.deleted_count, status: result.status });
    }
    const remaining = this.#sql.exec<{ n: number }>('SELECT (SELECT count(*) FROM change_log) + (SELECT count(*) FROM rows WHERE deleted = 1) + (SELECT count(*) FROM blobs) AS n').one().n;
    if (remaining > 0) await this.ctx.storage.setAlarm(Date.now() + GC_INTERVAL_MS);
  }

  async #ensureAlarm() {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + GC_INTERVAL_MS);
  }

  #snapshotKey(): string {
    let key = engine.getMeta(this.#sql, 'snapshot_key');
    if (!key) {
      key = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, '0')).join('');
      engine.setMeta(this.#sql, 'snapshot_key', key);
    }
    return key;
  }

  // -- point-in-time recovery (production only: local workerd has no bookmarks) -----------------

  /**
   * PITR step 1: asks the runtime to restore this object's database to `at` (epoch ms) when it
   * next starts. Returns the head now (for step 3) and the undo bookmark. Nothing changes until
   * step 2 restarts the object.
   */
  async pitrPrepare(at: number): Promise<{ ok: true; previousHead: number; bookmark: string; undoBookmark: string; instance: string } | Failure> {
    const storage = this.ctx.storage as DurableObjectStorage & { getBookmarkForTime?: unknown };
    if (typeof storage.getBookmarkForTime !== 'function') return { ok: false, status: 501, code: 'pitr_unsupported', message: 'This runtime has no point-in-time recovery (it exists only on Cloudflare, not in local workerd)' };
    // From here nothing is served: a write accepted now would be discarded by the rewind, and
    // its version number handed out again.
    this.#restoring = true;
    for (const ws of this.ctx.getWebSockets()) ws.close(1012, 'Restoring; reconnect shortly');
    let bookmark: string;
    let undoBookmark: string;
    try {
      bookmark = await this.ctx.storage.getBookmarkForTime(at);
      undoBookmark = await this.ctx.storage.onNextSessionRestoreBookmark(bookmark);
    } catch (err) {
      this.#restoring = false;
      return { ok: false, status: 501, code: 'pitr_unsupported', message: `Point-in-time recovery failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    return { ok: true, previousHead: engine.headVersion(this.#sql), bookmark, undoBookmark, instance: this.#instance };
  }

  /** PITR step 2: restarts the object, which then opens the restored database. The call itself rejects. */
  pitrRestart(): void {
    this.ctx.abort('point-in-time restore');
  }

  /**
   * PITR step 3, on the restored database: keeps clients that saw discarded changes from
   * diverging. Refuses to run on the instance that prepared the restore (the restart did not
   * happen, and the rewind would still be pending).
   */
  pitrFinish(previousHead: number, preparedBy?: string): { ok: true; restoredHead: number; serverVersion: number } | Failure {
    if (preparedBy !== undefined && preparedBy === this.#instance) return { ok: false, status: 409, code: 'pitr_not_restarted', message: 'The object did not restart; the restore has not happened yet' };
    return { ok: true, ...this.ctx.storage.transactionSync(() => engine.markRestored(this.#sql, previousHead)) };
  }

  // -- export (the archive feature's export route pages through these) ---------------------------

  /**
   * Live change-log entries in the next `limit` versions after `after` (other users'
   * notifications excluded), with the last version scanned and whether that reached the head.
   */
  exportLog(after: number, limit: number, userId: string | null): { entries: ArchivedEntry[]; through: number; done: boolean } {
    const after_ = Math.max(after, engine.prunedThrough(this.#sql));
    const head = engine.headVersion(this.#sql);
    // Start at the next logged version, so the gap a point-in-time restore leaves costs one page.
    const from = this.#sql.exec<{ v: number | null }>('SELECT min(server_version) AS v FROM change_log WHERE server_version > ?', after_).one().v ?? head + 1;
    const through = Math.min(head, from + limit - 1);
    // userId null: every user's notifications (a fork replays everything).
    const entries = from > through ? [] : engine.changeLogRows(this.#sql, from, through).filter((e) => userId === null || e.tableName !== 'notifications' || e.userId === userId);
    return { entries, through: Math.max(through, after), done: through >= head };
  }

  /**
   * Replays history into this (fresh) workspace: each entry goes through the same push logic
   * (idempotency, last-write-wins, derived refs) as its original author, so the resulting rows
   * equal the source's at the point the history stops. Versions are allocated anew.
   */
  async importHistory(entries: ArchivedEntry[]): Promise<{ imported: number; serverVersion: number }> {
    const serverVersion = this.ctx.storage.transactionSync(() => {
      let head = engine.headVersion(this.#sql);
      for (const e of entries) {
        const payload = e.payload === null ? null : canonicalJson(e.payload);
        const live = e.payload !== null && !(e.payload.deleted === true || e.payload.deleted === 1);
        const fileHashes = REFERENCING_TABLES.has(e.tableName) && e.op === 'put' ? (live ? referencedHashes(e.payload?.file_hashes) : []) : null;
        const op: PreparedOp = { opId: e.opId, tableName: e.tableName as TableName, pk: e.pk, op: e.op, payload, clock: e.clock, hlc: e.hlc, deviceId: e.deviceId, fingerprint: e.fingerprint, fileHashes, bytes: entryBytes(payload, e.pk, e.hlc, e.deviceId) };
        // The original time: deletion times and GC retention stay those of the real writes. No
        // quota: a replay reproduces data the source already holds.
        const outcome = engine.applyPush(this.#sql, [op], e.userId, e.createdAt);
        if ('serverVersion' in outcome) head = outcome.serverVersion;
      }
      return head;
    });
    if (entries.length) await this.#ensureAlarm();
    return { imported: entries.length, serverVersion };
  }

  /** Erases this object's database and alarm: a fork whose replay failed leaves nothing behind. */
  async discard(): Promise<void> {
    await this.ctx.storage.deleteAll();
  }

  /** One page of the current state for an export, without the sync rate limit. */
  exportState(after: [string, string] | null, pageSize: number, userId: string): { items: engine.SnapshotItem[]; next: [string, string] | null } {
    const page = engine.snapshotPage(this.#sql, { after, pageSize, userId });
    return { items: JSON.parse(page.itemsJson) as engine.SnapshotItem[], next: page.next };
  }

  // -- blob bookkeeping (the storage feature's routes call these) -------------------------------

  blobState(hash: string): blobs.BlobState {
    return blobs.blobState(this.#sql, hash);
  }

  async commitBlob(input: blobs.CommitInput, quotaBytes: number): Promise<blobs.CommitOutcome> {
    const outcome = this.ctx.storage.transactionSync(() => blobs.commitBlob(this.#sql, input, quotaBytes, Date.now()));
    if (outcome.ok) await this.#ensureAlarm();
    return outcome;
  }

  markForDelete(hash: string): blobs.DeleteOutcome {
    return this.ctx.storage.transactionSync(() => blobs.markForDelete(this.#sql, hash, Date.now()));
  }

  /** Arms the GC alarm (uploads that are never committed must be collected too). */
  async armGc(): Promise<void> {
    await this.#ensureAlarm();
  }

  usage(): { usedBytes: number; blobCount: number; syncBytes: number } {
    return { usedBytes: blobs.usedBytes(this.#sql), blobCount: blobs.blobCount(this.#sql), syncBytes: engine.syncBytes(this.#sql) };
  }

  /** Phase one of blob GC, refused inside the cooldown after the previous run. */
  startBlobGc(input: { retentionSeconds: number; limit: number; cooldownMs: number }): { ok: true; candidates: { hash: string; storageKey: string }[]; strayCursor: string | null } | Failure {
    const now = Date.now();
    return this.ctx.storage.transactionSync(() => {
      const last = Number(engine.getMeta(this.#sql, 'blob_gc_at') ?? 0);
      if (now - last < input.cooldownMs) {
        const wait = Math.ceil((last + input.cooldownMs - now) / 1000);
        return { ok: false as const, status: 429 as const, code: 'rate_limited', message: `Rate limit exceeded. Retry after ${wait}s`, retryAfter: wait };
      }
      engine.setMeta(this.#sql, 'blob_gc_at', now);
      return { ok: true as const, candidates: blobs.markOrphans(this.#sql, now - input.retentionSeconds * 1000, input.limit, now), strayCursor: engine.getMeta(this.#sql, 'stray_cursor') };
    });
  }

  finishBlobGc(hashes: string[]): number {
    return this.ctx.storage.transactionSync(() => blobs.finishGc(this.#sql, hashes));
  }

  markStrays(keys: string[], nextCursor: string | null): { hash: string; storageKey: string }[] {
    return this.ctx.storage.transactionSync(() => {
      // The listing resumes where it stopped, so every object is reached over successive runs.
      if (nextCursor) engine.setMeta(this.#sql, 'stray_cursor', nextCursor);
      else this.#sql.exec("DELETE FROM meta WHERE key = 'stray_cursor'");
      return blobs.markStrays(this.#sql, keys, Date.now());
    });
  }

  // -- realtime ---------------------------------------------------------------------------------

  /**
   * WebSocket upgrade, forwarded by the Worker after it authenticated the caller and checked
   * membership. A ticket's nonce is recorded here so a ticket works once.
   */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') return new Response('Expected a WebSocket upgrade', { status: 426 });
    if (this.#restoring) return new Response('The workspace is being restored; try again shortly', { status: 503, headers: { 'retry-after': '5' } });
    const userId = request.headers.get('x-or3-user-id');
    if (!userId) return new Response('Missing caller', { status: 400 });
    if (this.ctx.getWebSockets(`user:${userId}`).length >= MAX_SOCKETS_PER_USER) {
      return new Response(`At most ${MAX_SOCKETS_PER_USER} realtime connections per user`, { status: 429 });
    }
    const nonce = request.headers.get('x-or3-ticket-nonce');
    if (nonce) {
      const now = Date.now();
      const expiresAt = Number(request.headers.get('x-or3-ticket-expires'));
      // Checked here too: the Worker's clock reading is older than ours.
      if (!Number.isFinite(expiresAt) || expiresAt <= now) return new Response('Ticket expired', { status: 403 });
      const fresh = this.ctx.storage.transactionSync(() => {
        // Used nonces are kept past their expiry, so a ticket cannot be replayed at the edge of it.
        this.#sql.exec('DELETE FROM ws_tickets WHERE expires_at < ?', now - TICKET_NONCE_MARGIN_MS);
        return this.#sql.exec('INSERT INTO ws_tickets (nonce, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING nonce', nonce, expiresAt).toArray().length > 0;
      });
      if (!fresh) return new Response('Ticket already used', { status: 403 });
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // Tagged by user and by session, so sign-out and password changes can close exactly theirs.
    const sessionId = request.headers.get('x-or3-session-id');
    this.ctx.acceptWebSocket(server, sessionId ? [`user:${userId}`, `session:${sessionId}`] : [`user:${userId}`]);
    server.serializeAttachment({ userId, sessionId, verifiedAt: 0 } satisfies SocketAttachment);
    // `hello` follows once the membership is confirmed from here (see #verify).
    this.ctx.waitUntil(this.#verify(server));
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Confirms from D1 that a socket's user is still a member, after the socket is accepted: a
   * removal that commits after this read is followed by closeSockets, which now finds the
   * socket; one that committed before it is seen here. (The Worker's own check ran before the
   * socket existed, so a removal in between would otherwise leave it open.) Until confirmed,
   * and again once the confirmation is older than SOCKET_REVERIFY_MS, pokes to the socket carry
   * no changes; a socket whose user is gone is closed with 4003. The first confirmation sends
   * `hello`.
   */
  async #verify(ws: WebSocket) {
    if (this.#verifying.has(ws)) return;
    const attachment = ws.deserializeAttachment() as SocketAttachment | null;
    const workspaceId = this.ctx.id.name;
    if (!attachment?.userId || !workspaceId) return;
    this.#verifying.add(ws);
    try {
      if (!(await membershipOf(this.env.DB, workspaceId, attachment.userId))) {
        ws.close(4003, 'Access to this workspace was revoked');
        return;
      }
      ws.serializeAttachment({ ...attachment, verifiedAt: Date.now() } satisfies SocketAttachment);
      if (!attachment.verifiedAt) ws.send(JSON.stringify({ type: 'hello', serverVersion: engine.headVersion(this.#sql) }));
    } catch (err) {
      // D1 unavailable, or the socket closed meanwhile: it stays unverified and is tried again
      // at the next poke.
      logEvent('warn', 'socket_verify_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
    } finally {
      this.#verifying.delete(ws);
    }
  }

  /** Closes the sockets of one user (removed from the workspace) or of everyone (workspace deleted). */
  closeSockets(userId?: string): number {
    const sockets = this.ctx.getWebSockets(userId ? `user:${userId}` : undefined);
    for (const ws of sockets) ws.close(4003, 'Access to this workspace was revoked');
    return sockets.length;
  }

  /**
   * Closes the sockets of an ended session (`sessionId`: signed out), or all of a user's except
   * one session's (`exceptSessionId`: the password changed and every other session was revoked).
   * 4001 tells clients to re-authenticate, not that access to the workspace is gone.
   */
  closeSessionSockets(input: { userId: string; sessionId?: string; exceptSessionId?: string }): number {
    let closed = 0;
    for (const ws of this.ctx.getWebSockets(input.sessionId ? `session:${input.sessionId}` : `user:${input.userId}`)) {
      const attachment = ws.deserializeAttachment() as SocketAttachment | null;
      if (input.exceptSessionId && attachment?.sessionId === input.exceptSessionId) continue;
      ws.close(4001, 'The session ended; sign in again');
      closed++;
    }
    return closed;
  }

  /**
   * Tells every socket about a commit. When the commit's changes are small they ride along
   * (`fromVersion`, `changes`: what a pull from `fromVersion` would return to that socket's
   * user), so a device whose cursor is `fromVersion` applies them without a pull; otherwise, or
   * with too many users to filter notifications for, the poke is `{ type, serverVersion }` only.
   * Sends are held by the output gate until the commit is durable.
   */
  #poke(fromVersion: number, serverVersion: number, perUser: boolean) {
    const sockets = this.ctx.getWebSockets();
    if (!sockets.length) return;
    const plain = JSON.stringify({ type: 'poke', serverVersion });
    const now = Date.now();
    // Each socket's user while its membership confirmation is fresh; null: send a plain poke.
    const users = sockets.map((ws) => {
      const attachment = ws.deserializeAttachment() as SocketAttachment | null;
      return attachment?.userId && attachment.verifiedAt && now - attachment.verifiedAt < SOCKET_REVERIFY_MS ? attachment.userId : null;
    });
    const carry = !perUser || new Set(users).size <= POKE_MAX_USERS;
    const messages = new Map<string, string>();
    const messageFor = (userId: string): string => {
      if (!carry) return plain;
      // Only notifications differ between users; without any, one page serves every socket.
      const key = perUser ? userId : '';
      let text = messages.get(key);
      if (text === undefined) {
        const page = engine.pull(this.#sql, { cursor: fromVersion, limit: serverVersion - fromVersion, userId }, POKE_CHANGE_BYTES);
        const small = !page.requiresSnapshot && !page.hasMore && page.changesJson.length <= 2 * POKE_CHANGE_BYTES;
        text = small ? `{"type":"poke","serverVersion":${serverVersion},"fromVersion":${fromVersion},"changes":${page.changesJson}}` : plain;
        messages.set(key, text);
      }
      return text;
    };
    for (const [i, ws] of sockets.entries()) {
      try {
        const userId = users[i] ?? null;
        if (userId === null) {
          ws.send(plain);
          this.ctx.waitUntil(this.#verify(ws));
        } else {
          ws.send(messageFor(userId));
        }
      } catch {
        // A socket closing as we send: it will be cleaned up by its close event.
      }
    }
  }

  override webSocketMessage(_ws: WebSocket, _message: string | ArrayBuffer) {
    // Clients only listen; "ping" is answered by the auto-response without waking the object.
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string) {
    try {
      ws.close(code, reason);
    } catch {
      // Already closed (newer compatibility dates reply to the close frame automatically).
    }
  }
}
