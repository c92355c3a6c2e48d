/**
 * A workspace's sync status as one immutable value (the shape of PowerSync's `SyncStatus` and
 * Dexie Cloud's `syncState`): `ws.status` is the current one, and the `status` event carries
 * each new one. An app draws its status bar from it alone; its fields never contradict each
 * other (offline means the socket is not reported live either).
 *
 *   ws.on('status', (s) => bar.textContent = s.phase === 'offline' ? 'Offline' : `${s.phase} · ${s.pending} pending`);
 */
import type { Or3Error } from './http.js';

/** What the sync loop is doing. */
export type SyncPhase = 'offline' | 'syncing' | 'idle' | 'error';
/**
 * The realtime socket: `live` (pokes and presence arrive), `connecting` (down or retrying; the loop
 * polls meanwhile), `offline`, `off` (disabled, or access revoked), `unavailable` (this runtime has
 * no WebSocket and none was passed as the `WebSocket` option: polling only, `realtimeReason` says why).
 */
export type RealtimeState = 'live' | 'connecting' | 'offline' | 'off' | 'unavailable';

export interface SyncStatus {
  /**
   * `offline`: no network (the browser says so, or requests cannot reach the server); `syncing`:
   * a push and pull round is running; `idle`: caught up, waiting for the next change; `error`:
   * the last round failed (`error` says why; transient failures are retried with backoff).
   */
  readonly phase: SyncPhase;
  readonly realtime: RealtimeState;
  /** Why realtime is `unavailable` (and what to do); null otherwise. */
  readonly realtimeReason: string | null;
  /** Local writes waiting to be pushed. */
  readonly pending: number;
  /** Local writes the server refused for good (`failedOps()`). */
  readonly failed: number;
  /** When a full push and pull round last succeeded (epoch ms), or null. Kept across reloads. */
  readonly lastSyncedAt: number | null;
  /** Whether this device has ever completed a full round for this workspace. */
  readonly hasSynced: boolean;
  /** Why the last round failed (phase `error`, or `offline` after a network failure); null otherwise. */
  readonly error: Or3Error | null;
}

type Patch = Partial<Omit<SyncStatus, 'hasSynced'>>;

export class StatusTracker {
  /** What each part reported, before the value is made consistent (the socket's own state, say, while offline). */
  #reported: Omit<SyncStatus, 'hasSynced'>;
  #current: SyncStatus;

  constructor(
    initial: Patch,
    private readonly emit: (status: SyncStatus) => void,
  ) {
    this.#reported = { phase: 'idle', realtime: 'off', realtimeReason: null, pending: 0, failed: 0, lastSyncedAt: null, error: null, ...initial };
    this.#current = StatusTracker.#make(this.#reported);
  }

  get current(): SyncStatus {
    return this.#current;
  }

  /** Applies a change; emits the new value when anything visible changed. */
  update(patch: Patch) {
    this.#reported = { ...this.#reported, ...patch };
    const next = StatusTracker.#make(this.#reported);
    const keys = Object.keys(next) as (keyof SyncStatus)[];
    if (keys.every((k) => next[k] === this.#current[k])) return;
    this.#current = next;
    this.emit(next);
  }

  static #make(s: Omit<SyncStatus, 'hasSynced'>): SyncStatus {
    // Offline is offline: a socket the browser has not closed yet is not reported live.
    const realtime = s.phase === 'offline' && s.realtime !== 'off' && s.realtime !== 'unavailable' ? 'offline' : s.realtime;
    const error = s.phase === 'error' || s.phase === 'offline' ? s.error : null;
    return Object.freeze({ ...s, realtime, error, hasSynced: s.lastSyncedAt !== null });
  }
}
