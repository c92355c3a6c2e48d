/**
 * API.md "Pull is compacted": a pull is a state diff. Each key changed since the cursor comes
 * back once, with its current winning revision, at the version of its most recent logged op.
 * Deployed OR3 clients need this to converge (issue: concurrent renames diverged, and a fresh
 * device resurrected a hard-deleted thread).
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import { describe, expect, it } from 'vitest';
import migrations from '../../migrations/do/migrations.js';
import { compareRevisions } from '../../protocol/rules';
import { call } from '../auth/helpers';
import { message, op, pull, pushOk, snapshotAll, syncUser, thread, type SyncUser } from './helpers';

type Change = {
  serverVersion: number;
  tableName: string;
  pk: string;
  op: 'put' | 'delete';
  payload?: Record<string, any>;
  stamp: { deviceId: string; opId: string; hlc: string; clock: number };
};

/**
 * A device that applies pull pages the way OR3's deployed client does: it skips its own
 * device's changes, reads the local rows of a page once before applying any of it, compares a
 * change against the stored row by clock and then by the row's hlc — which a local edit leaves
 * stale — and hard-deletes rows.
 */
class Or3LikeDevice {
  readonly rows = new Map<string, { payload: Record<string, any>; clock: number; hlc: string }>();
  cursor = 0;
  constructor(readonly deviceId: string) {}

  applyPage(changes: Change[]) {
    const key = (c: Change) => `${c.tableName}/${c.pk}`;
    const local = new Map(changes.map((c) => [key(c), this.rows.get(key(c))]));
    for (const c of changes) {
      if (c.stamp.deviceId === this.deviceId) continue;
      const stored = local.get(key(c));
      const wins = !stored || c.stamp.clock > stored.clock || (c.stamp.clock === stored.clock && c.stamp.hlc > stored.hlc);
      if (c.op === 'delete') {
        if (stored && wins) this.rows.delete(key(c));
      } else if (wins) {
        this.rows.set(key(c), { payload: c.payload!, clock: c.stamp.clock, hlc: c.stamp.hlc });
      }
    }
  }

  async sync(u: SyncUser, limit = 1000) {
    for (;;) {
      const page = await pull(u, u.workspaceId, this.cursor, { limit });
      this.applyPage(page.changes);
      this.cursor = page.nextCursor;
      if (!page.hasMore) return;
    }
  }

  /** A local edit as OR3 makes it: the row's clock moves, its hlc does not; the op gets a fresh hlc. */
  edit(pk: string, patch: Record<string, unknown>, opHlc: string) {
    const row = this.rows.get(`threads/${pk}`)!;
    const clock = row.clock + 1;
    row.payload = { ...row.payload, ...patch, clock };
    row.clock = clock;
    return op('threads', pk, row.payload, { clock, hlc: opHlc, deviceId: this.deviceId });
  }

  title(pk: string) {
    return this.rows.get(`threads/${pk}`)?.payload.title;
  }
}

describe('compacted pull: OR3 clients converge', () => {
  it.each([
    ['A pushes first', true],
    ['B pushes first', false],
  ])('concurrent equal-clock renames on two devices converge on the winner (%s)', async (_name, aFirst) => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [
      op('threads', 't1', thread('t1', { title: 'Original', clock: 4 }), { clock: 4, hlc: '0001795000000000:000000:seed', deviceId: 'seed' }),
    ]);
    const a = new Or3LikeDevice('device-a');
    const b = new Or3LikeDevice('device-b');
    await a.sync(u);
    await b.sync(u);
    const renameA = a.edit('t1', { title: 'Title from A' }, '0001795000000008c:000000:a');
    const renameB = b.edit('t1', { title: 'Title from B' }, '0001795000000008e:000000:b');
    for (const rename of aFirst ? [renameA, renameB] : [renameB, renameA]) await pushOk(u, u.workspaceId, [rename]);
    await a.sync(u);
    await b.sync(u);
    // Equal clocks, B's hlc is greater: B's title wins on the server and on both devices.
    const { items } = await snapshotAll(u, u.workspaceId);
    expect(items[0].payload.title).toBe('Title from B');
    expect([a.title('t1'), b.title('t1')]).toEqual(['Title from B', 'Title from B']);
  });

  it('a fresh device does not resurrect a thread whose put and hard delete fall in one page', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('threads', 'keep', thread('keep')), op('threads', 'gone', thread('gone'))]);
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { thread_id: 'gone' })),
      op('threads', 'gone', thread('gone', { title: 'renamed', clock: 2 }), { clock: 2 }),
    ]);
    await pushOk(u, u.workspaceId, [
      op('threads', 'gone', undefined, { operation: 'delete', clock: 3 }),
      op('messages', 'm1', undefined, { operation: 'delete', clock: 2 }),
    ]);
    const fresh = new Or3LikeDevice('device-new');
    await fresh.sync(u);
    expect([...fresh.rows.keys()]).toEqual(['threads/keep']);
    // And with the smallest pages the answer is the same.
    const paged = new Or3LikeDevice('device-paged');
    await paged.sync(u, 1);
    expect([...paged.rows.keys()]).toEqual(['threads/keep']);
  });
});

describe('compacted pull: what is served', () => {
  it('pull from 0 after each of N rows was edited 10 times returns N changes, each the last edit', async () => {
    const u = await syncUser();
    const n = 25;
    for (let round = 1; round <= 10; round++) {
      await pushOk(
        u,
        u.workspaceId,
        Array.from({ length: n }, (_, i) => op('messages', `m${i}`, message(`m${i}`, { data: `edit ${round}`, clock: round }), { clock: round })),
      );
    }
    const all = await pull(u, u.workspaceId, 0, { limit: 1000 });
    expect(all.changes).toHaveLength(n);
    expect(all.hasMore).toBe(false);
    expect(new Set(all.changes.map((c) => c.pk)).size).toBe(n);
    expect(all.changes.every((c) => c.payload.data === 'edit 10' && c.stamp.clock === 10)).toBe(true);
    // Ascending by the version of each key's last op; the cursor lands on the head.
    expect(all.changes.map((c) => c.serverVersion)).toEqual(Array.from({ length: n }, (_, i) => 9 * n + i + 1));
    expect(all.nextCursor).toBe(10 * n);
    // Paged, the same N changes.
    const seen: string[] = [];
    let cursor = 0;
    for (;;) {
      const page = await pull(u, u.workspaceId, cursor, { limit: 7 });
      seen.push(...page.changes.map((c) => c.pk));
      if (page.hasMore) expect(page.nextCursor).toBeGreaterThan(cursor);
      cursor = page.nextCursor;
      if (!page.hasMore) break;
    }
    expect(seen).toHaveLength(n);
  });

  it('a cursor between two edits of a key returns it once, with its latest revision', async () => {
    const u = await syncUser();
    const first = await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1', { title: 'one' }))]);
    await pushOk(u, u.workspaceId, [op('threads', 't2', thread('t2'))]);
    const third = op('threads', 't1', thread('t1', { title: 'three', clock: 3 }), { clock: 3 });
    await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1', { title: 'two', clock: 2 }), { clock: 2 }), third]);
    const { changes } = await pull(u, u.workspaceId, first.serverVersion);
    expect(changes.map((c) => [c.serverVersion, c.pk, c.payload.title])).toEqual([
      [2, 't2', 'T'],
      [4, 't1', 'three'],
    ]);
    expect(changes[1].stamp).toEqual(third.stamp);
  });

  it('never serves a loser: a losing op moves the key to its version but the winner is what is served', async () => {
    const u = await syncUser();
    const winner = op('threads', 't1', thread('t1', { title: 'winner', clock: 5 }), { clock: 5, hlc: 'b', deviceId: 'w' });
    await pushOk(u, u.workspaceId, [winner]);
    const loser = op('threads', 't1', thread('t1', { title: 'loser', clock: 5 }), { clock: 5, hlc: 'a', deviceId: 'l' });
    const reply = await pushOk(u, u.workspaceId, [loser]);
    expect(reply.results[0]).toMatchObject({ success: true, serverVersion: 2 });
    for (const cursor of [0, 1]) {
      const { changes } = await pull(u, u.workspaceId, cursor);
      expect(changes).toEqual([{ serverVersion: 2, tableName: 'threads', pk: 't1', op: 'put', payload: winner.payload, stamp: winner.stamp }]);
    }
    expect((await pull(u, u.workspaceId, 2)).changes).toEqual([]);
  });

  it('the export still holds every op, losers and superseded edits included', async () => {
    const u = await syncUser();
    const ops = [
      op('threads', 't1', thread('t1', { title: 'a', clock: 2 }), { clock: 2 }),
      op('threads', 't1', thread('t1', { title: 'b', clock: 1 }), { clock: 1 }), // loses
      op('threads', 't1', thread('t1', { title: 'c', clock: 3 }), { clock: 3 }),
      op('threads', 't1', undefined, { operation: 'delete', clock: 4 }),
    ];
    await pushOk(u, u.workspaceId, ops);
    expect((await pull(u, u.workspaceId, 0)).changes.map((c) => [c.serverVersion, c.op])).toEqual([[4, 'delete']]);
    const res = await call('GET', `/api/workspaces/${u.workspaceId}/export`, u.headers);
    expect(res.status).toBe(200);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const opIds = lines.filter((l) => l.type === 'change').map((l) => l.opId);
    expect(opIds).toEqual(ops.map((o) => o.stamp.opId));
  });

  it('pokes carry the compacted changes too', async () => {
    const u = await syncUser();
    const engine = await import('../../src/workspace-db/reads');
    await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1')), op('threads', 't1', thread('t1', { title: 'x', clock: 2 }), { clock: 2 })]);
    const page = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      engine.pull(state.storage.sql, { cursor: 0, limit: 2, userId: u.id }),
    );
    expect(JSON.parse(page.changesJson).map((c: Change) => [c.serverVersion, c.payload?.title])).toEqual([[2, 'x']]);
  });
});

/** The previous schema's pull: a replay of the change log above the cursor (losers included). */
const OLD_PULL = `SELECT server_version, table_name, pk, op, payload, clock, hlc, op_id, device_id FROM change_log
  WHERE server_version > ? AND (table_name != 'notifications' OR user_id = ?) ORDER BY server_version`;

type State = Map<string, { op: 'put' | 'delete'; payload: unknown; rev: { clock: number; hlc: string; opId: string } }>;

/** Applies changes with last-write-wins, as a correct client does. */
function applyLww(
  state: State,
  changes: { tableName: string; pk: string; op: 'put' | 'delete'; payload?: unknown; stamp: { clock: number; hlc: string; opId: string } }[],
) {
  for (const c of changes) {
    const key = `${c.tableName}/${c.pk}`;
    const rev = { clock: c.stamp.clock, hlc: c.stamp.hlc, opId: c.stamp.opId };
    const stored = state.get(key);
    if (!stored || compareRevisions(rev, stored.rev) > 0) state.set(key, { op: c.op, payload: c.op === 'put' ? c.payload : null, rev });
  }
  return state;
}

/** Pushes a history with edits, a loser and hard deletes through the real routes (versions 1–10). */
async function fillHistory(u: SyncUser) {
  const ws = u.workspaceId;
  await pushOk(u, ws, [
    op('threads', 't1', thread('t1')),
    op('threads', 't2', thread('t2')),
    op('messages', 'm1', message('m1')),
    op('messages', 'm2', message('m2')),
  ]);
  await pushOk(u, ws, [op('threads', 't1', thread('t1', { title: 'edited', clock: 3 }), { clock: 3, deviceId: 'laptop' })]);
  await pushOk(u, ws, [op('threads', 't1', thread('t1', { title: 'loser', clock: 2 }), { clock: 2, deviceId: 'phone' })]);
  await pushOk(u, ws, [op('messages', 'm1', undefined, { operation: 'delete', clock: 2 }), op('messages', 'm2', undefined, { operation: 'delete', clock: 2 })]);
  await pushOk(u, ws, [op('threads', 't3', thread('t3')), op('messages', 'm3', message('m3', { data: 'late' }))]);
}

/**
 * Turns the object back into one deployed before this change (the previous schema: no
 * changed_version, no device_id, no size columns; migrations 0003 and later not applied), runs
 * `oldState` on it as the old engine would have left it, and reads every pull the old engine
 * would have answered (a replay of the log above each cursor).
 */
async function revertToPreviousSchema(u: SyncUser, oldState: (sql: SqlStorage) => void = () => {}) {
  return runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
    const sql = state.storage.sql;
    const syncBytes = Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'sync_bytes'").one().value);
    // What later migrations added goes too (0006: webhooks, service tokens, the thread index).
    for (const table of ['service_tokens', 'webhook_deliveries', 'webhook_events', 'webhook_outbox', 'webhooks']) sql.exec(`DROP TABLE ${table}`);
    sql.exec('DROP INDEX rows_thread_messages_idx');
    sql.exec('DROP INDEX rows_changed_idx');
    // Migration 0005 (capabilities and upload intents) came later still: it goes too, and is re-applied after 0003 and 0004.
    sql.exec('DROP INDEX rows_flags_idx');
    sql.exec('DROP TABLE upload_intents');
    for (const column of ['changed_version', 'device_id', 'size', 'flags']) sql.exec(`ALTER TABLE rows DROP COLUMN ${column}`);
    sql.exec('ALTER TABLE change_log DROP COLUMN size');
    // Migration 0007 dropped blobs.provider_id: the previous schema had it.
    sql.exec("ALTER TABLE blobs ADD COLUMN provider_id text NOT NULL DEFAULT 'r2'");
    sql.exec("DELETE FROM meta WHERE key IN ('collected_through', 'sync_bytes')");
    const from = migrations.journal.entries.find((e: { tag: string }) => e.tag === '0003_compacted_pull')!.when;
    sql.exec('DELETE FROM __drizzle_migrations WHERE created_at >= ?', from);
    oldState(sql);
    const head = Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'server_version'").one().value);
    const pulls: Record<number, any[]> = {};
    for (let cursor = 0; cursor <= head; cursor++) {
      pulls[cursor] = sql
        .exec<any>(OLD_PULL, cursor, u.id)
        .toArray()
        .map((r) => ({
          serverVersion: r.server_version,
          tableName: r.table_name,
          pk: r.pk,
          op: r.op,
          payload: r.payload === null ? undefined : JSON.parse(r.payload),
          stamp: { clock: r.clock, hlc: r.hlc, opId: r.op_id, deviceId: r.device_id },
        }));
    }
    return { head, pulls, syncBytes };
  });
}

/** Runs the pending migrations as the object's constructor does, and reads what they wrote. */
function applyMigrations(u: SyncUser) {
  return runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), async (_i, state) => {
    await migrate(drizzle(state.storage), migrations);
    const sql = state.storage.sql;
    return {
      columns: sql
        .exec<{ name: string }>('PRAGMA table_info(rows)')
        .toArray()
        .map((r) => r.name),
      rows: sql.exec<{ pk: string; changed_version: number; device_id: string }>('SELECT pk, changed_version, device_id FROM rows ORDER BY pk').toArray(),
      floor: Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'collected_through'").one().value),
      syncBytes: Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'sync_bytes'").one().value),
    };
  });
}

describe('compacted pull: migrating an object filled under the previous schema', () => {
  it('pulls before and after the migration agree on the final state of every key, from every cursor', async () => {
    const u = await syncUser();
    await fillHistory(u);
    const before = await revertToPreviousSchema(u, (sql) => sql.exec("UPDATE rows SET deleted_at = 1700000000999 WHERE pk = 'm1'"));
    expect(before.head).toBe(10);
    const applied = await applyMigrations(u);
    expect(applied.columns).toEqual(expect.arrayContaining(['changed_version', 'device_id']));
    // Each key's last logged op (t1's at v6 is a loser), and its winner's device.
    expect(applied.rows).toEqual([
      { pk: 'm1', changed_version: 7, device_id: 'device-a' },
      { pk: 'm2', changed_version: 8, device_id: 'device-a' },
      { pk: 'm3', changed_version: 10, device_id: 'device-a' },
      { pk: 't1', changed_version: 6, device_id: 'laptop' },
      { pk: 't2', changed_version: 2, device_id: 'device-a' },
      { pk: 't3', changed_version: 9, device_id: 'device-a' },
    ]);
    expect(applied.floor).toBe(0);
    // The quota's running total, recounted by migration 0004, is what the pushes had added up.
    expect(applied.syncBytes).toBe(before.syncBytes);

    for (let cursor = 0; cursor <= before.head; cursor++) {
      const after = await pull(u, u.workspaceId, cursor, { limit: 1000 });
      expect(after.requiresSnapshot).toBe(false);
      // From the state a device at `cursor` holds, the old pull and the new one end in the same state.
      const base = applyLww(
        new Map(),
        before.pulls[0]!.filter((c) => c.serverVersion <= cursor),
      );
      expect(applyLww(new Map(base), after.changes), `cursor ${cursor}`).toEqual(applyLww(new Map(base), before.pulls[cursor]!));
      // Each key at most once, in ascending versions.
      expect(new Set(after.changes.map((c) => c.pk)).size).toBe(after.changes.length);
    }
    // Deletion times stored in ms are served as integer epoch seconds.
    const snap = await snapshotAll(u, u.workspaceId, 10);
    expect(snap.items.find((i: any) => i.pk === 'm1')).toMatchObject({ kind: 'tombstone', serverDeletedAt: 1700000000 });
  });

  it('collected tombstones and a pruned log set the pull floor; a snapshot still reproduces the state', async () => {
    const u = await syncUser();
    await fillHistory(u);
    const before = await revertToPreviousSchema(u, (sql) => {
      // What the old GC could leave: the log pruned through v3, m2's tombstone (v8) collected.
      sql.exec('DELETE FROM change_log WHERE server_version <= 3');
      sql.exec("INSERT INTO meta (key, value) VALUES ('pruned_through', '3') ON CONFLICT(key) DO UPDATE SET value = excluded.value");
      sql.exec("DELETE FROM rows WHERE pk = 'm2'");
    });
    const applied = await applyMigrations(u);
    expect(applied.floor).toBe(8);
    // t2's winner (v2) left the log: its device is not known any more.
    expect(applied.rows.find((r) => r.pk === 't2')).toEqual({ pk: 't2', changed_version: 2, device_id: 'unknown' });
    expect((await pull(u, u.workspaceId, 7)).requiresSnapshot).toBe(true);
    const from8 = await pull(u, u.workspaceId, 8);
    expect(from8).toMatchObject({ requiresSnapshot: false, oldestRetainedVersion: 9 });
    expect(from8.changes.map((c) => c.pk)).toEqual(['t3', 'm3']);
    const base = applyLww(
      new Map(),
      before.pulls[3]!.filter((c) => c.serverVersion <= 8),
    );
    expect(applyLww(new Map(base), from8.changes)).toEqual(applyLww(new Map(base), before.pulls[8]!));
    const snap = await snapshotAll(u, u.workspaceId, 10);
    expect(snap.items.map((i: any) => [i.pk, i.kind])).toEqual([
      ['m1', 'tombstone'],
      ['m3', 'row'],
      ['t1', 'row'],
      ['t2', 'row'],
      ['t3', 'row'],
    ]);
  });
});
