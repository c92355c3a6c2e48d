/**
 * The sync loop of one workspace: push the outbox (push.ts), apply what pokes brought or pull
 * from the cursor (apply.ts), bootstrap from a snapshot when the server says the cursor is too
 * old (bootstrap.ts), then wait for the next reason to run (a local write, a realtime poke, the
 * poll timer, coming back online). It drives the status's `phase`.
 *
 * Failure handling: transient errors (network, timeouts, 429, 5xx) back off exponentially with
 * jitter and honour Retry-After; after `circuitThreshold` failures in a row the circuit opens
 * and the loop waits `circuitCooldownMs` between attempts, so a down server is not hammered.
 * Permanent refusals of an op (validation, role, conflict) keep it in the outbox with its error
 * and out of the loop (push.ts); a 401 that a refresh could not fix stops syncing until
 * `syncNow()`.
 */
import { applyRemote, pullPages, readState, saveState, type ApplyContext } from './apply.js';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffOptions } from './backoff.js';
import { bootstrap } from './bootstrap.js';
import type { SyncChange } from '../../protocol/sync.js';
import type { LocalDatabase, SyncStateRow } from './db.js';
import type { EventSink } from './events.js';
import type { HybridClock } from './hlc.js';
import { Or3Error, type HttpClient } from './http.js';
import { isOffline } from './network.js';
import { outboxCounts, pushOutbox, type PushEvents } from './push.js';
import type { PokedChanges } from './realtime.js';
import { SocketUnavailable, type SocketSync } from './socket-sync.js';
import type { StatusTracker } from './status.js';

export interface SyncOptions {
  /** Pull interval while the realtime socket is down (ms). */
  pollIntervalMs: number;
  /** Pull interval while the socket is up: a safety net for a missed poke (ms). */
  realtimePollIntervalMs: number;
  realtime: boolean;
  /** Push and pull over the realtime socket while it is live (docs/sync.md "Sync over the socket"); HTTP otherwise. */
  socketSync: boolean;
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
  socketSync: true,
  pushBatchSize: 100,
  pullLimit: 500,
  snapshotPageSize: 500,
  backoff: DEFAULT_BACKOFF,
  circuitThreshold: 5,
  circuitCooldownMs: 30_000,
};

export interface LoopContext {
  db: LocalDatabase;
  http: HttpClient;
  workspaceId: string;
  clock: HybridClock;
  events: EventSink<PushEvents>;
  options: SyncOptions;
  status: StatusTracker;
  /** Whether the realtime socket is live (pokes arrive): the poll interval, and offline vs error. */
  realtimeLive: () => boolean;
  /** Push and pull over the live socket (socket-sync.ts); absent: HTTP only. */
  socket?: SocketSync;
}

export class SyncEngine {
  #stopped = true;
  /** Ends an idle wait (local write, poke, poll due). */
  #wake = new AbortController();
  /** Ends any wait, a backoff included: syncNow(), back online, stop(). */
  #urgent = new AbortController();
  #loop: Promise<void> | null = null;
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #failures = 0;
  #reportedCursor = -1;
  /** Changes that came with pokes, applied by the loop when they start at the cursor. */
  #poked: PokedChanges[] = [];
  /** The highest server version a hello or poke announced. */
  #announced = 0;
  /** syncNow() asked for a real pull, whatever the pokes brought (one may have been lost). */
  #forcePull = false;

  constructor(private readonly ctx: LoopContext) {}

  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    // After a stop(), the previous loop finishes before the new one starts.
    this.#loop = (this.#loop ?? Promise.resolve()).then(() => this.#run());
  }

  async stop() {
    this.#stopped = true;
    this.urgentWake();
    await this.#loop;
  }

  /** Runs the loop now (also after a permanent error); resolves once a full push + pull succeeded. */
  syncNow(): Promise<void> {
    if (this.#stopped) return Promise.reject(new Or3Error(0, 'stopped', 'Sync is stopped'));
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#failures = 0;
    this.#forcePull = true;
    this.urgentWake();
    return done;
  }

  /** Something may need syncing (a local write, a poke): run soon, but never inside a backoff. */
  wake() {
    this.#wake.abort();
  }

  /** Run now, cutting a backoff short (back online, the socket came up, stop). */
  urgentWake() {
    this.#failures = 0;
    this.#urgent.abort();
    this.#wake.abort();
  }

  /** A hello or a poke without changes: the server is at `serverVersion`. */
  async announced(serverVersion: number) {
    this.#announced = Math.max(this.#announced, serverVersion);
    if (serverVersion > (await this.state()).cursor) this.wake();
  }

  /** A poke that carried its changes. */
  poked(poked: PokedChanges) {
    // A bounded queue: after a long stall the loop pulls anyway.
    if (this.#poked.push(poked) > 64) this.#poked.shift();
    this.#announced = Math.max(this.#announced, poked.serverVersion);
    this.wake();
  }

  state(): Promise<SyncStateRow> {
    return readState(this.ctx.db);
  }

  /** The outbox changed: refresh the status's counts. */
  async outboxChanged() {
    this.ctx.status.update(await outboxCounts(this.ctx.db));
  }

  /** Applies changes as a pull or a poke would (for the benchmark and tests; apply.ts). */
  applyRemote(changes: SyncChange[], nextCursor: number, from?: number): Promise<boolean> {
    return applyRemote(this.#apply, changes, nextCursor, from);
  }

  get #apply(): ApplyContext {
    return { db: this.ctx.db, clock: this.ctx.clock, events: this.ctx.events };
  }

  #checkStopped = () => {
    if (this.#stopped) throw new Or3Error(0, 'stopped', 'Sync stopped');
  };

  async #run() {
    const { status, options } = this.ctx;
    while (!this.#stopped) {
      const waiters = this.#waiters.splice(0);
      this.#wake = new AbortController();
      this.#urgent = new AbortController();
      let delay: number;
      if (isOffline()) {
        status.update({ phase: 'offline', error: null });
        for (const w of waiters) this.#waiters.push(w); // still owed a full sync
        delay = options.pollIntervalMs;
      } else {
        try {
          status.update({ phase: 'syncing' });
          await this.push();
          await this.pull();
          this.#failures = 0;
          status.update({ phase: 'idle', lastSyncedAt: await this.#synced() });
          for (const w of waiters) w.resolve();
          delay = this.ctx.realtimeLive() ? options.realtimePollIntervalMs : options.pollIntervalMs;
        } catch (err) {
          if (this.#stopped) {
            for (const w of waiters) this.#waiters.push(w);
            break;
          }
          const error = err instanceof Or3Error ? err : new Or3Error(0, 'client_error', err instanceof Error ? err.message : String(err));
          if (error.transient) {
            this.#failures++;
            // Unreachable, unless the socket is live (then the network works and this is a failure).
            status.update({ phase: error.status === 0 && !this.ctx.realtimeLive() ? 'offline' : 'error', error });
            delay = backoffDelay(this.#failures, options.backoff, error.retryAfterMs);
            if (this.#failures >= options.circuitThreshold) delay = Math.max(delay, options.circuitCooldownMs);
            for (const w of waiters) this.#waiters.push(w); // retried; they resolve when it works
          } else {
            status.update({ phase: 'error', error });
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

  /** Records a full successful round (kept, so `hasSynced` holds across reloads). */
  async #synced(): Promise<number> {
    const at = Date.now();
    await this.ctx.db.transaction('rw', this.ctx.db.sync_state, () => saveState(this.ctx, { lastSyncedAt: at }));
    return at;
  }

  async push(): Promise<void> {
    const { db, http, workspaceId, events, options } = this.ctx;
    const socket = options.socketSync ? this.ctx.socket : undefined;
    await pushOutbox({
      db,
      http,
      ...(socket ? { socket } : {}),
      workspaceId,
      events,
      pushBatchSize: options.pushBatchSize,
      checkStopped: this.#checkStopped,
      outboxChanged: () => this.outboxChanged(),
    });
  }

  async pull(): Promise<void> {
    // Taken now: a syncNow() during this pull asks for another one.
    const force = this.#forcePull;
    this.#forcePull = false;
    try {
      if (!(await this.#applyPoked()) || force) await pullPages(this.#pullContext, () => this.bootstrap());
    } catch (err) {
      if (force) this.#forcePull = true;
      throw err;
    }
    const { cursor } = await this.state();
    if (cursor > 0 && cursor !== this.#reportedCursor) {
      // Lets server GC know what this device has; a failure here must not fail the sync.
      await this.#reportCursor(cursor)
        .then(() => (this.#reportedCursor = cursor))
        .catch(() => undefined);
    }
  }

  /** This device's cursor to the server: on the live socket (socket-sync.ts), else over HTTP. */
  async #reportCursor(version: number): Promise<void> {
    const { http, workspaceId, clock, options } = this.ctx;
    const deviceId = clock.deviceId;
    const socket = options.socketSync ? this.ctx.socket : undefined;
    if (socket) {
      try {
        return await socket.updateCursor(deviceId, version);
      } catch (err) {
        if (!(err instanceof SocketUnavailable)) throw err;
      }
    }
    await http.json('POST', '/api/sync/update-cursor', { scope: { workspaceId }, deviceId, version });
  }

  /** Downloads and installs a snapshot (bootstrap.ts). */
  bootstrap(): Promise<void> {
    return bootstrap({ ...this.#pullContext, snapshotPageSize: this.ctx.options.snapshotPageSize });
  }

  get #pullContext() {
    const { http, workspaceId, options } = this.ctx;
    const socket = options.socketSync ? this.ctx.socket : undefined;
    return { ...this.#apply, http, ...(socket ? { socket } : {}), workspaceId, pullLimit: options.pullLimit, checkStopped: this.#checkStopped };
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
}
