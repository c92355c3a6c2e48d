/**
 * Applying the server's changes to the local database: pull pages (and, through the loop, the
 * changes pokes carry), each change with the server's last-write-wins rule, its revision and the
 * cursor in one transaction. A local edit the server has not accepted yet that loses to a remote
 * change was concurrent with it: a `conflict`; one that wins keeps the remote change as its
 * baseline (what a refusal restores). Also the local sync state (cursor, clock, last sync).
 */
import { compareRevisions, SYNC_CAPABILITIES, type SyncChange } from '../../protocol/sync.js';
import { markRemote, SYNCED_TABLES, type LocalDatabase, type Revision, type SyncStateRow } from './db.js';
import type { EventSink } from './events.js';
import type { HybridClock } from './hlc.js';
import { Or3Error, type HttpClient } from './http.js';
import { SocketUnavailable, type SocketSync } from './socket-sync.js';

/** The events this part of the engine emits (the workspace's `conflict` and `change`). */
export interface ApplyEvents extends Record<string, unknown> {
  /**
   * A local edit lost last-write-wins to a concurrent remote one (made without seeing ours);
   * the remote value is now in the table. `local` is the revision that lost.
   */
  conflict: { tableName: string; pk: string; local: { clock: number; hlc: string; opId: string; deleted: boolean }; remote: SyncChange };
  /** Remote changes were applied (or a refused write taken back): the tables they touched, and the cursor. */
  change: { tables: string[]; cursor: number };
}

/** What applying needs: the database, the clock (moved past remote stamps) and the events. */
export interface ApplyContext {
  db: LocalDatabase;
  clock: HybridClock;
  events: EventSink<ApplyEvents>;
}

export const LOCAL_TABLES = ['revisions', 'sync_state', 'pending_ops'] as const;

export async function readState(db: LocalDatabase): Promise<SyncStateRow> {
  return (await db.sync_state.get('state')) ?? { id: 'state', cursor: 0, hlcWall: 0, hlcCounter: 0 };
}

/** Writes sync state fields with the clock's current position (call inside a transaction that covers `sync_state`). */
export async function saveState(ctx: Pick<ApplyContext, 'db' | 'clock'>, patch: Partial<SyncStateRow>) {
  const current = await readState(ctx.db);
  const hlc = ctx.clock.state;
  await ctx.db.sync_state.put({ ...current, ...patch, hlcWall: hlc.wall, hlcCounter: hlc.counter, id: 'state' });
}

/**
 * Applies remote changes with last-write-wins and moves the cursor, in one transaction.
 * `from`: the cursor the changes were read from; when another tab has moved the cursor since,
 * nothing is applied (false), so the cursor never goes back.
 */
export async function applyRemote(ctx: ApplyContext, changes: SyncChange[], nextCursor: number, from?: number): Promise<boolean> {
  const { db, clock } = ctx;
  const conflicts: ApplyEvents['conflict'][] = [];
  const touched = new Set<string>();
  let applied = true;
  await db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES], async (tx) => {
    if (from !== undefined && (await readState(db)).cursor !== from) {
      applied = false;
      return;
    }
    markRemote(tx);
    // Decided in memory, written in bulk: one read of the known revisions and one write per
    // table, not three awaited requests per change (docs/client.md "Pull"). A key
    // may appear twice (a poke's commit): each change is judged against the revision the ones
    // before it left, and the last decision is what is written.
    const key = (tableName: string, pk: string) => `${tableName}\u0000${pk}`;
    const keys = changes.map((c) => [c.tableName, c.pk] as [string, string]);
    const read = await db.revisions.bulkGet(keys);
    const current = new Map<string, Revision | undefined>();
    changes.forEach((c, i) => {
      if (!current.has(key(c.tableName, c.pk))) current.set(key(c.tableName, c.pk), read[i]);
    });
    const rows = new Map<string, { tableName: string; pk: string; payload: Record<string, unknown> | null }>();
    const revisions = new Map<string, Revision>();
    for (const change of changes) {
      clock.observe(change.stamp.hlc);
      const k = key(change.tableName, change.pk);
      const incoming = { clock: change.stamp.clock, hlc: change.stamp.hlc, opId: change.stamp.opId };
      const known = current.get(k);
      if (known && known.opId === incoming.opId) {
        // The echo of our own edit: the server has it in order now.
        if (known.local) {
          const settled = { ...known, local: false };
          current.set(k, settled);
          revisions.set(k, settled);
        }
        continue;
      }
      if (known && compareRevisions(incoming, known) <= 0) {
        // What we have is newer. If it is a local edit the server has not accepted yet, the
        // remote change is the server's state beneath it: that is what a refusal restores.
        if (known.local) await rebase(db, change, incoming);
        continue;
      }
      rows.set(k, { tableName: change.tableName, pk: change.pk, payload: change.op === 'put' && change.payload ? change.payload : null });
      const revision: Revision = { tableName: change.tableName, pk: change.pk, ...incoming, deleted: change.op === 'delete' };
      current.set(k, revision);
      revisions.set(k, revision);
      touched.add(change.tableName);
      if (known?.local)
        conflicts.push({
          tableName: change.tableName,
          pk: change.pk,
          local: { clock: known.clock, hlc: known.hlc, opId: known.opId, deleted: known.deleted },
          remote: change,
        });
    }
    for (const tableName of touched) {
      const mine = [...rows.values()].filter((r) => r.tableName === tableName);
      const puts = mine.flatMap((r) => (r.payload ? [r.payload] : []));
      const deletes = mine.flatMap((r) => (r.payload ? [] : [r.pk]));
      if (puts.length) await db.table(tableName).bulkPut(puts);
      if (deletes.length) await db.table(tableName).bulkDelete(deletes);
    }
    if (revisions.size) await db.revisions.bulkPut([...revisions.values()]);
    await saveState(ctx, { cursor: nextCursor });
  });
  for (const conflict of conflicts) ctx.events.emit('conflict', conflict);
  if (touched.size) ctx.events.emit('change', { tables: [...touched], cursor: nextCursor });
  return applied;
}

/** A remote change beneath waiting local edits of its row becomes their baseline. */
async function rebase(db: LocalDatabase, change: SyncChange, incoming: { clock: number; hlc: string; opId: string }) {
  const waiting = await db.pending_ops
    .where('[tableName+pk]')
    .equals([change.tableName, change.pk])
    .filter((o) => !o.error)
    .toArray();
  for (const op of waiting) {
    const base = op.baseline?.revision;
    if (base && compareRevisions(incoming, base) <= 0) continue;
    await db.pending_ops.update(op.seq!, {
      baseline: {
        row: change.op === 'put' && change.payload ? change.payload : null,
        revision: { tableName: change.tableName, pk: change.pk, ...incoming, deleted: change.op === 'delete' },
      },
    });
  }
}

/**
 * Pulls pages from the cursor until `hasMore` is false; `bootstrap` runs when the server says the
 * cursor is too old (then pulling goes on from the snapshot's watermark).
 */
export async function pullPages(
  ctx: ApplyContext & { http: HttpClient; socket?: SocketSync; workspaceId: string; pullLimit: number; checkStopped: () => void },
  bootstrap: () => Promise<void>,
): Promise<void> {
  for (let snapshots = 0; ;) {
    ctx.checkStopped();
    const state = await readState(ctx.db);
    if (ctx.socket && (await socketPull(ctx, state.cursor)) === 'done') return;
    // Over HTTP: no socket, it went away mid-stream (the pages applied so far stand), a page
    // needed a snapshot, or another tab moved the cursor (read again from where it is now).
    const now = await readState(ctx.db);
    if (now.cursor !== state.cursor && ctx.socket) continue;
    const res = await ctx.http.json<{ changes: SyncChange[]; nextCursor: number; hasMore: boolean; requiresSnapshot: boolean }>('POST', '/api/sync/pull', {
      scope: { workspaceId: ctx.workspaceId },
      cursor: now.cursor,
      limit: ctx.pullLimit,
      ...SYNC_CAPABILITIES,
    });
    if (res.requiresSnapshot) {
      if (++snapshots > 3) throw new Or3Error(500, 'snapshot_loop', 'The server keeps asking for a snapshot');
      await bootstrap();
      continue;
    }
    if (res.changes.length || res.nextCursor !== state.cursor) {
      // Another tab moved the cursor meanwhile: read again from where it is now.
      if (!(await applyRemote(ctx, res.changes, res.nextCursor, now.cursor))) continue;
    }
    if (!res.hasMore) break;
  }
}

/**
 * Pulls to the head over the live socket, applying each page as it comes (docs/sync.md "Sync
 * over the socket"). 'done' when the head was reached; 'http' when the caller should go on over
 * HTTP: no socket, it went away mid-stream, a page said a snapshot is needed, or another tab
 * moved the cursor (a page was not applied).
 */
async function socketPull(ctx: ApplyContext & { socket?: SocketSync; pullLimit: number }, cursor: number): Promise<'done' | 'http'> {
  let outcome: 'done' | 'http' = 'done';
  try {
    await ctx.socket!.pull(cursor, ctx.pullLimit, async (page, from) => {
      if (page.requiresSnapshot) return ((outcome = 'http'), false);
      if (page.changes.length || page.nextCursor !== from) {
        if (!(await applyRemote(ctx, page.changes, page.nextCursor, from))) return ((outcome = 'http'), false);
      }
      return true;
    });
  } catch (err) {
    if (err instanceof SocketUnavailable) return 'http';
    throw err;
  }
  return outcome;
}
