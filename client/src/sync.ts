/**
 * The sync loop of one workspace: push the outbox, pull from the cursor, bootstrap from a
 * snapshot when the server says the cursor is too old, and wait for the next reason to run
 * (a local write, a realtime poke, the poll timer, coming back online).
 *
 * Failure handling: transient errors (network, timeouts, 429, 5xx) back off exponentially with
 * jitter and honour Retry-After; after `circuitThreshold` failures in a row the circuit opens
 * and the loop waits `circuitCooldownMs` between attempts, so a down server is not hammered.
 * Permanent refusals of an op (validation, role, conflict) keep it in the outbox with its error
 * and out of the loop; a 401 that a refresh could not fix stops syncing until `syncNow()`.
 * Nothing is deleted from the outbox until the server has answered for it, and every op is
 * idempotent by its opId, so a lost response just means the same op is sent again.
 */
import { backoffDelay, sleep, type BackoffOptions, DEFAULT_BACKOFF } from './backoff.js';
import {
  compareRevisions,
  markRemote,
  SYNCED_TABLES,
  type Or3Database,
  type PendingOp,
  type Revision,
  type Row,
  type SnapshotItem,
  type SyncChange,
  type SyncStateRow,
} from './db.js';
import type { Emitter } from './events.js';
import type { HybridClock } from './hlc.js';
import { HttpClient, Or3Error } from './http.js';
import { Realtime, type PokedChanges, type WebSocketLike } from './realtime.js';

export type SyncStatus = 'idle' | 'syncing' | 'offline' | 'error';

export type { SyncChange } from './db.js';

export interface SyncEvents extends Record<string, unknown> {
  status: { status: SyncStatus; error?: Or3Error };
  pending: { count: number; failed: number };
  /**
   * A local edit lost last-write-wins to a concurrent remote one (made without seeing ours);
   * the remote value is now in the table. `local` is the revision that lost.
   */
  conflict: { tableName: string; pk: string; local: { clock: number; hlc: string; opId: string; deleted: boolean }; remote: SyncChange };
  /** Remote changes were applied: the tables they touched, and the new cursor. */
  change: { tables: string[]; cursor: number };
  /** An op the server refused for good; it stays in the outbox with this error. */
  rejected: { op: PendingOp; error: { code: string; message: string } };
}

export interface SyncOptions {
  /** Pull interval while the realtime socket is down (ms). */
  pollIntervalMs: number;
  /** Pull interval while the socket is up: a safety net for a missed poke (ms). */
  realtimePollIntervalMs: number;
  realtime: boolean;
  pushBatchSize: number;
  pullLimit: number;
  snapshotPageSize: number;
  backoff: BackoffOptions;
  circuitThreshold: number;
  circuitCooldownMs: number;
}

export const DEFAULT_SYNC_OPTIONS: SyncOptions = {
  pollIntervalMs: 5_000,
  realtimePollIntervalMs: 60_000,
  realtime: true,
  pushBatchSize: 100,
  pullLimit: 500,
  snapshotPageSize: 500,
  backoff: DEFAULT_BACKOFF,
  circuitThreshold: 5,
  circuitCooldownMs: 30_000,
};

const LOCAL_TABLES = ['revisions', 'sync_state', 'pending_ops'] as const;

export class SyncEngine {
  status: SyncStatus = 'idle';
  #stopped = true;
  /** Ends an idle wait (local write, poke, poll due). */
  #wake = new AbortController();
  /** Ends any wait, a backoff included: syncNow(), back online, stop(). */
  #urgent = new AbortController();
  #loop: Promise<void> | null = null;
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #failures = 0;
  #reportedCursor = -1;
  #realtime: Realtime | null = null;
  /** Changes that came with pokes, applied by the loop when they start at the cursor. */
  #poked: PokedChanges[] = [];
  /** The highest server version a hello or poke announced. */
  #announced = 0;
  /** syncNow() asked for a real pull, whatever the pokes brought (one may have been lost). */
  #forcePull = false;
  #detachOnline: (() => void) | null = null;

  constructor(
    private readonly db: Or3Database,
    private readonly http: HttpClient,
    readonly workspaceId: string,
    private readonly clock: HybridClock,
    private readonly events: Emitter<SyncEvents>,
    private readonly options: SyncOptions,
    private readonly webSocket: (new (url: string) => WebSocketLike) | undefined,
  ) {}

  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.options.realtime && this.webSocket) {
      this.#realtime = new Realtime(this.http, this.workspaceId, this.webSocket, this.options.backoff, {
        onVersion: (v) => void this.#maybePull(v),
        onChanges: (poked) => {
          // A bounded queue: after a long stall the loop pulls anyway.
          if (this.#poked.push(poked) > 64) this.#poked.shift();
          this.#announced = Math.max(this.#announced, poked.serverVersion);
          this.wake();
        },
        onOpenChange: () => this.wake(),
      });
      this.#realtime.start();
    }
    this.#detachOnline = listenOnline(() => {
      this.#failures = 0; // back online: retry now, not after the backoff
      this.#realtime?.reconnectNow();
      this.#urgentWake();
    });
    // After a stop(), the previous loop finishes before the new one starts.
    this.#loop = (this.#loop ?? Promise.resolve()).then(() => this.#run());
  }

  async stop() {
    this.#stopped = true;
    this.#realtime?.stop();
    this.#detachOnline?.();
    this.#urgentWake();
    await this.#loop;
  }

  /** Runs the loop now (also after a permanent error); resolves once a full push + pull succeeded. */
  syncNow(): Promise<void> {
    if (this.#stopped) return Promise.reject(new Or3Error(0, 'stopped', 'Sync is stopped'));
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#failures = 0;
    this.#forcePull = true;
    this.#urgentWake();
    return done;
  }

  /** Something may need syncing (a local write, a poke): run soon, but never inside a backoff. */
  wake() {
    this.#wake.abort();
  }

  #urgentWake() {
    this.#urgent.abort();
    this.#wake.abort();
  }

  get realtimeConnected(): boolean {
    return this.#realtime?.open ?? false;
  }

  async #maybePull(serverVersion: number) {
    this.#announced = Math.max(this.#announced, serverVersion);
    const state = await this.state();
    if (serverVersion > state.cursor) this.wake();
  }

  #setStatus(status: SyncStatus, error?: Or3Error) {
    if (status === this.status && !error) return;
    this.status = status;
    this.events.emit('status', { status, ...(error ? { error } : {}) });
  }

  async #run() {
    while (!this.#stopped) {
      const waiters = this.#waiters.splice(0);
      this.#wake = new AbortController();
      this.#urgent = new AbortController();
      let delay: number;
      if (isOffline()) {
        this.#setStatus('offline');
        for (const w of waiters) this.#waiters.push(w); // still owed a full sync
        delay = this.options.pollIntervalMs;
      } else {
        try {
          this.#setStatus('syncing');
          await this.push();
          await this.pull();
          this.#failures = 0;
          this.#setStatus('idle');
          for (const w of waiters) w.resolve();
          delay = this.#realtime?.open ? this.options.realtimePollIntervalMs : this.options.pollIntervalMs;
        } catch (err) {
          if (this.#stopped) {
            for (const w of waiters) this.#waiters.push(w);
            break;
          }
          const error = err instanceof Or3Error ? err : new Or3Error(0, 'client_error', err instanceof Error ? err.message : String(err));
          if (error.transient) {
            this.#failures++;
            this.#setStatus(error.status === 0 ? 'offline' : 'error', error);
            delay = backoffDelay(this.#failures, this.options.backoff, error.retryAfterMs);
            if (this.#failures >= this.options.circuitThreshold) delay = Math.max(delay, this.options.circuitCooldownMs);
            for (const w of waiters) this.#waiters.push(w); // retried; they resolve when it works
          } else {
            this.#setStatus('error', error);
            for (const w of waiters) w.reject(error);
            delay = Number.POSITIVE_INFINITY; // permanent (e.g. signed out): wait for syncNow()
          }
          if (this.#stopped) break;
          // During backoff only an urgent wake (syncNow, back online, stop) cuts the wait short.
          await sleep(Number.isFinite(delay) ? delay : 2 ** 31 - 1, this.#urgent.signal);
          continue;
        }
      }
      if (this.#stopped) break;
      await sleep(delay, this.#wake.signal);
    }
    for (const w of this.#waiters.splice(0)) w.reject(new Or3Error(0, 'stopped', 'Sync stopped'));
  }

  #checkStopped() {
    if (this.#stopped) throw new Or3Error(0, 'stopped', 'Sync stopped');
  }

  async state(): Promise<SyncStateRow> {
    return (await this.db.sync_state.get('state')) ?? { id: 'state', cursor: 0, hlcWall: 0, hlcCounter: 0 };
  }

  async emitPending() {
    const ops = await this.db.pending_ops.toArray();
    const failed = ops.filter((o) => o.error).length;
    this.events.emit('pending', { count: ops.length - failed, failed });
  }

  // -- push -------------------------------------------------------------------------------------

  async push(): Promise<void> {
    for (;;) {
      this.#checkStopped();
      const batch = await this.db.pending_ops
        .orderBy('seq')
        .filter((op) => !op.error)
        .limit(this.options.pushBatchSize)
        .toArray();
      if (!batch.length) return;
      try {
        await this.#pushBatch(batch);
      } catch (err) {
        // One bad op rejects a whole batch (400/413): send them one by one to find it. A batch
        // over the workspace's sync quota is refused as a whole, and its ops with it: sending
        // them one by one would only fill the quota to the brim in arrival order.
        if (err instanceof Or3Error && (err.status === 400 || err.status === 413) && err.code !== 'quota_exceeded' && batch.length > 1) {
          for (const op of batch) await this.#pushBatch([op]).catch((e) => this.#rejectIfPermanent([op], e));
        } else {
          await this.#rejectIfPermanent(batch, err);
        }
      }
      await this.emitPending();
    }
  }

  async #rejectIfPermanent(ops: PendingOp[], err: unknown) {
    if (!(err instanceof Or3Error) || err.transient || err.status === 401) throw err;
    await this.#reject(ops.map((op) => ({ op, error: { code: err.code, message: err.message } })));
  }

  /**
   * Marks ops as refused for good and takes their effect back locally: the row returns to what
   * the server has (the op's baseline), unless a newer local edit of it is waiting. The ops stay
   * in the outbox with their error for the app to show, retry or discard.
   */
  async #reject(items: { op: PendingOp; error: { code: string; message: string } }[]) {
    const tables = new Set<string>();
    await this.db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES], async (tx) => {
      markRemote(tx);
      for (const { op, error } of items) {
        if (!(await this.db.pending_ops.get(op.seq!))) continue; // superseded meanwhile
        await this.db.pending_ops.update(op.seq!, { error });
        const newer = await this.db.pending_ops
          .where('[tableName+pk]')
          .equals([op.tableName, op.pk])
          .filter((o) => !o.error && o.seq! > op.seq!)
          .count();
        const revision = await this.db.revisions.get([op.tableName, op.pk]);
        if (newer || !op.baseline || revision?.opId !== op.opId) continue;
        const { row, revision: base } = op.baseline;
        if (row) await this.db.table(op.tableName).put(row);
        else await this.db.table(op.tableName).delete(op.pk);
        if (base) await this.db.revisions.put({ ...base, local: false });
        else await this.db.revisions.delete([op.tableName, op.pk]);
        tables.add(op.tableName);
      }
    });
    for (const item of items) this.events.emit('rejected', item);
    if (tables.size) this.events.emit('change', { tables: [...tables], cursor: (await this.state()).cursor });
  }

  async #pushBatch(batch: PendingOp[]) {
    await this.db.pending_ops.bulkUpdate(batch.map((op) => ({ key: op.seq!, changes: { attempts: op.attempts + 1 } })));
    const ops = batch.map((op) => ({
      tableName: op.tableName,
      operation: op.operation,
      pk: op.pk,
      ...(op.payload ? { payload: op.payload } : {}),
      stamp: { deviceId: op.deviceId, opId: op.opId, hlc: op.hlc, clock: op.clock },
    }));
    const res = await this.http.json<{ results: { opId: string; success: boolean; error?: string; errorCode?: string }[] }>('POST', '/api/sync/push', {
      scope: { workspaceId: this.workspaceId },
      ops,
    });
    const byId = new Map(batch.map((op) => [op.opId, op]));
    const accepted: number[] = [];
    const refused: { op: PendingOp; error: { code: string; message: string } }[] = [];
    for (const result of res.results) {
      const op = byId.get(result.opId);
      if (!op) continue;
      if (result.success) accepted.push(op.seq!);
      else refused.push({ op, error: { code: result.errorCode ?? 'REJECTED', message: result.error ?? 'The server refused this change' } });
    }
    await this.db.pending_ops.bulkDelete(accepted);
    if (refused.length) await this.#reject(refused);
  }

  // -- pull -------------------------------------------------------------------------------------

  async pull(): Promise<void> {
    // Taken now: a syncNow() during this pull asks for another one.
    const force = this.#forcePull;
    this.#forcePull = false;
    try {
      if (!(await this.#applyPoked()) || force) await this.#pullPages();
    } catch (err) {
      if (force) this.#forcePull = true;
      throw err;
    }
    const { cursor } = await this.state();
    if (cursor > 0 && cursor !== this.#reportedCursor) {
      // Lets server GC know what this device has; a failure here must not fail the sync.
      await this.http
        .json('POST', '/api/sync/update-cursor', { scope: { workspaceId: this.workspaceId }, deviceId: this.clock.deviceId, version: cursor })
        .then(() => (this.#reportedCursor = cursor))
        .catch(() => undefined);
    }
  }

  /**
   * Applies the changes pokes brought, in order, while they start exactly at the cursor (what a
   * pull from there would return). True when that reached everything announced, so no pull is
   * needed; false to pull (nothing poked, a gap, or more announced than arrived).
   */
  async #applyPoked(): Promise<boolean> {
    const queued = this.#poked.splice(0).sort((a, b) => a.fromVersion - b.fromVersion);
    if (!queued.length) return false;
    let { cursor } = await this.state();
    for (const poked of queued) {
      if (poked.serverVersion <= cursor) continue; // already pulled
      if (poked.fromVersion !== cursor) return false;
      // Checked again inside the transaction: another tab may have moved the cursor.
      if (!(await this.applyRemote(poked.changes, poked.serverVersion, poked.fromVersion))) return false;
      cursor = poked.serverVersion;
    }
    return cursor >= this.#announced;
  }

  async #pullPages(): Promise<void> {
    for (let snapshots = 0; ;) {
      this.#checkStopped();
      const state = await this.state();
      const res = await this.http.json<{ changes: SyncChange[]; nextCursor: number; hasMore: boolean; requiresSnapshot: boolean }>('POST', '/api/sync/pull', {
        scope: { workspaceId: this.workspaceId },
        cursor: state.cursor,
        limit: this.options.pullLimit,
      });
      if (res.requiresSnapshot) {
        if (++snapshots > 3) throw new Or3Error(500, 'snapshot_loop', 'The server keeps asking for a snapshot');
        await this.bootstrap();
        continue;
      }
      if (res.changes.length || res.nextCursor !== state.cursor) {
        // Another tab moved the cursor meanwhile: read again from where it is now.
        if (!(await this.applyRemote(res.changes, res.nextCursor, state.cursor))) continue;
      }
      if (!res.hasMore) break;
    }
  }

  /**
   * Applies remote changes with last-write-wins and moves the cursor, in one transaction.
   * `from`: the cursor the changes were read from; when another tab has moved the cursor since,
   * nothing is applied (false), so the cursor never goes back.
   */
  async applyRemote(changes: SyncChange[], nextCursor: number, from?: number): Promise<boolean> {
    const conflicts: SyncEvents['conflict'][] = [];
    const touched = new Set<string>();
    let applied = true;
    await this.db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES], async (tx) => {
      if (from !== undefined && (await this.state()).cursor !== from) {
        applied = false;
        return;
      }
      markRemote(tx);
      for (const change of changes) {
        this.clock.observe(change.stamp.hlc);
        const incoming = { clock: change.stamp.clock, hlc: change.stamp.hlc, opId: change.stamp.opId };
        const known = await this.db.revisions.get([change.tableName, change.pk]);
        if (known && known.opId === incoming.opId) {
          // The echo of our own edit: the server has it in order now.
          if (known.local) await this.db.revisions.put({ ...known, local: false });
          continue;
        }
        if (known && compareRevisions(incoming, known) <= 0) {
          // What we have is newer. If it is a local edit the server has not accepted yet, the
          // remote change is the server's state beneath it: that is what a refusal restores.
          if (known.local) await this.#rebase(change, incoming);
          continue;
        }
        const table = this.db.table(change.tableName);
        if (change.op === 'put' && change.payload) await table.put(change.payload);
        else await table.delete(change.pk);
        await this.db.revisions.put({ tableName: change.tableName, pk: change.pk, ...incoming, deleted: change.op === 'delete' });
        touched.add(change.tableName);
        if (known?.local)
          conflicts.push({
            tableName: change.tableName,
            pk: change.pk,
            local: { clock: known.clock, hlc: known.hlc, opId: known.opId, deleted: known.deleted },
            remote: change,
          });
      }
      await this.#saveState({ cursor: nextCursor, lastSyncedAt: Date.now() });
    });
    for (const conflict of conflicts) this.events.emit('conflict', conflict);
    if (touched.size) this.events.emit('change', { tables: [...touched], cursor: nextCursor });
    return applied;
  }

  async #rebase(change: SyncChange, incoming: { clock: number; hlc: string; opId: string }) {
    const waiting = await this.db.pending_ops
      .where('[tableName+pk]')
      .equals([change.tableName, change.pk])
      .filter((o) => !o.error)
      .toArray();
    for (const op of waiting) {
      const base = op.baseline?.revision;
      if (base && compareRevisions(incoming, base) <= 0) continue;
      await this.db.pending_ops.update(op.seq!, {
        baseline: {
          row: change.op === 'put' && change.payload ? change.payload : null,
          revision: { tableName: change.tableName, pk: change.pk, ...incoming, deleted: change.op === 'delete' },
        },
      });
    }
  }

  async #saveState(patch: Partial<SyncStateRow>) {
    const current = await this.state();
    const hlc = this.clock.state;
    await this.db.sync_state.put({ ...current, ...patch, hlcWall: hlc.wall, hlcCounter: hlc.counter, id: 'state' });
  }

  // -- snapshot bootstrap -----------------------------------------------------------------------

  /**
   * Downloads a full snapshot into `snapshot_stage`, then in one transaction replaces the local
   * tables with it, replays the outbox on top (local edits the server has not seen stay), and
   * sets the cursor to the snapshot's watermark. An expired page token restarts the download.
   */
  async bootstrap(): Promise<void> {
    let staged: { snapshotId: string; highWatermark: number } | null = null;
    for (let attempt = 0; !staged; attempt++) {
      try {
        staged = await this.#download();
      } catch (err) {
        if (err instanceof Or3Error && err.status === 410 && attempt < 3) continue;
        throw err;
      }
    }
    const { snapshotId, highWatermark } = staged;
    const tables = new Set<string>();
    await this.db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES, 'snapshot_stage'], async (tx) => {
      markRemote(tx);
      for (const name of SYNCED_TABLES) await this.db.table(name).clear();
      await this.db.revisions.clear();
      const CHUNK = 1_000;
      for (let offset = 0; ; offset += CHUNK) {
        const items = await this.db.snapshot_stage.where('snapshotId').equals(snapshotId).offset(offset).limit(CHUNK).toArray();
        if (!items.length) break;
        const rows = new Map<string, Row[]>();
        const revisions: Revision[] = [];
        for (const { item } of items) {
          revisions.push({ tableName: item.tableName, pk: item.pk, ...item.revision, deleted: item.kind === 'tombstone' });
          if (item.kind === 'row') {
            const list = rows.get(item.tableName);
            if (list) list.push(item.payload);
            else rows.set(item.tableName, [item.payload]);
          }
          tables.add(item.tableName);
        }
        for (const [name, list] of rows) await this.db.table(name).bulkPut(list);
        await this.db.revisions.bulkPut(revisions);
      }
      // Local edits the server has not accepted yet win where they are newer, as they will on the server.
      for (const op of await this.db.pending_ops
        .orderBy('seq')
        .filter((o) => !o.error)
        .toArray()) {
        const known = await this.db.revisions.get([op.tableName, op.pk]);
        const mine = { clock: op.clock, hlc: op.hlc, opId: op.opId };
        // The snapshot is the server's state now: it is what a refusal of this op restores.
        const row = known && !known.deleted ? ((await this.db.table(op.tableName).get(op.pk)) as Row | undefined) : undefined;
        await this.db.pending_ops.update(op.seq!, { baseline: { row: row ?? null, revision: known ?? null } });
        if (known && compareRevisions(mine, known) <= 0) continue;
        if (op.operation === 'put' && op.payload) await this.db.table(op.tableName).put(op.payload);
        else await this.db.table(op.tableName).delete(op.pk);
        await this.db.revisions.put({ tableName: op.tableName, pk: op.pk, ...mine, deleted: op.operation === 'delete', local: true });
      }
      await this.db.snapshot_stage.clear();
      await this.#saveState({ cursor: highWatermark, lastSyncedAt: Date.now() });
    });
    this.events.emit('change', { tables: [...tables], cursor: highWatermark });
  }

  async #download(): Promise<{ snapshotId: string; highWatermark: number }> {
    await this.db.snapshot_stage.clear();
    let pageToken: string | null = null;
    let first: { snapshotId: string; highWatermark: number } | null = null;
    do {
      this.#checkStopped();
      const page: { snapshotId: string; highWatermark: number; items: SnapshotItem[]; nextPageToken: string | null } = await this.http.json(
        'POST',
        '/api/sync/snapshot',
        {
          scope: { workspaceId: this.workspaceId },
          pageSize: this.options.snapshotPageSize,
          ...(pageToken ? { pageToken } : {}),
        },
      );
      first ??= { snapshotId: page.snapshotId, highWatermark: page.highWatermark };
      await this.db.snapshot_stage.bulkAdd(page.items.map((item) => ({ snapshotId: first!.snapshotId, item })));
      pageToken = page.nextPageToken;
    } while (pageToken);
    return first;
  }
}

/** `navigator.onLine === false` in browsers; Node has no such signal (failures tell instead). */
function isOffline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: boolean } }).navigator;
  return nav?.onLine === false;
}

function listenOnline(callback: () => void): () => void {
  const target = globalThis as { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
  if (typeof target.addEventListener !== 'function' || typeof (globalThis as { window?: unknown }).window === 'undefined') return () => {};
  target.addEventListener('online', callback);
  return () => target.removeEventListener?.('online', callback);
}
