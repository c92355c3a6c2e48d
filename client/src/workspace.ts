/**
 * `Or3Workspace`, the app's handle on one open workspace: a small façade (Replicache's shape)
 * over `WorkspaceEngine`, which composes the parts and stays private. The façade is the whole
 * public surface: the typed database, events, the status value, `syncNow()`, uploads and file
 * reads, presence, refused writes, and `close()`.
 */
import { openDatabase, type LocalDatabase, type Or3Database } from './db.js';
import { Emitter } from './events.js';
import { HybridClock } from './hlc.js';
import type { HttpClient } from './http.js';
import { hide } from './internal.js';
import { DEFAULT_SYNC_OPTIONS, SyncEngine, type SyncOptions } from './loop.js';
import { listenNetwork } from './network.js';
import { DEFAULT_PRESENCE_OPTIONS, Or3Presence, PresenceRoom, type PresenceOptions, type PresencePeer } from './presence.js';
import { failedOp, type FailedOp, type PushEvents } from './push.js';
import { Realtime, type WebSocketLike } from './realtime.js';
import { SocketSync } from './socket-sync.js';
import { StatusTracker, type SyncStatus } from './status.js';
import { DEFAULT_TRANSFER_OPTIONS, TransferQueue, type TransferEvents, type TransferOptions, type UploadInput } from './transfers.js';

/** Every event of a workspace, by name, with its payload. */
export interface WorkspaceEvents extends PushEvents, TransferEvents {
  /** The status changed: the new value (also `ws.status`). */
  status: SyncStatus;
  /** The roster changed: every device online, this one included (also `ws.presence.roster()`). */
  presence: { roster: PresencePeer[] };
}

export interface WorkspaceOptions {
  sync?: Partial<SyncOptions>;
  transfers?: Partial<TransferOptions>;
  presence?: Partial<PresenceOptions>;
  WebSocket?: (new (url: string) => WebSocketLike) | null;
  indexedDB?: IDBFactory;
  IDBKeyRange?: typeof IDBKeyRange;
}

/** @internal Everything behind an `Or3Workspace` (tests reach it through internal.ts). */
export class WorkspaceEngine {
  readonly db: LocalDatabase;
  readonly clock: HybridClock;
  readonly events = new Emitter<WorkspaceEvents>();
  readonly status: StatusTracker;
  readonly sync: SyncEngine;
  readonly files: TransferQueue;
  readonly realtime: Realtime | null;
  /** Push and pull over the live socket (socket-sync.ts); HTTP otherwise. */
  readonly socketSync: SocketSync;
  readonly presence: PresenceRoom;
  #closeHandlers: (() => void)[] = [];
  #persistTimer: ReturnType<typeof setTimeout> | null = null;
  #detachNetwork: () => void = () => {};

  constructor(
    readonly http: HttpClient,
    readonly id: string,
    readonly userId: string,
    readonly deviceId: string,
    options: WorkspaceOptions,
    prefix: string,
  ) {
    this.clock = new HybridClock(deviceId);
    const deps = options.indexedDB ? { indexedDB: options.indexedDB, IDBKeyRange: options.IDBKeyRange } : {};
    // One database per (user, workspace): two accounts on one device never share rows.
    this.db = openDatabase(`${prefix}:${userId}:${id}`, { clock: this.clock, onCaptured: () => this.#captured() }, deps);
    const syncOptions = { ...DEFAULT_SYNC_OPTIONS, ...options.sync };
    const WebSocketImpl =
      options.WebSocket === null || !syncOptions.realtime
        ? undefined
        : (options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket);
    // Asked for realtime, but the runtime has no WebSocket (Node 20, some workers): say so, loudly, once.
    const unavailable = !WebSocketImpl && options.WebSocket === undefined && syncOptions.realtime;
    if (unavailable) warnNoWebSocket(syncOptions.pollIntervalMs);
    const initial = unavailable
      ? { realtime: 'unavailable' as const, realtimeReason: noWebSocketReason(syncOptions.pollIntervalMs) }
      : { realtime: WebSocketImpl ? ('connecting' as const) : ('off' as const) };
    this.status = new StatusTracker(initial, (s) => {
      // A full round got through while the socket is down: the network works, so dial now.
      if (s.phase === 'idle' && s.realtime !== 'live') this.realtime?.reconnectNow();
      this.events.emit('status', s);
    });
    this.presence = new PresenceRoom(
      userId,
      deviceId,
      (message) => this.realtime?.send(message) ?? false,
      (roster) => this.events.emit('presence', { roster }),
      { ...DEFAULT_PRESENCE_OPTIONS, ...options.presence },
    );
    this.socketSync = new SocketSync(
      (message) => this.realtime?.send(message) ?? false,
      () => this.realtime?.state === 'live',
    );
    this.realtime = WebSocketImpl
      ? new Realtime(http, id, deviceId, WebSocketImpl, syncOptions.backoff, {
          onVersion: (v) => {
            void this.sync.announced(v);
          },
          onChanges: (poked) => this.sync.poked(poked),
          onPresence: (msg) => this.presence.receive(msg),
          onReply: (msg) => this.socketSync.receive(msg),
          onState: (state) => {
            this.status.update({ realtime: state });
            if (state !== 'live') this.socketSync.closed();
            if (state === 'live') {
              this.presence.connected();
              this.sync.urgentWake(); // the network works: end a backoff or an offline wait
            } else this.presence.disconnected();
          },
        })
      : null;
    this.sync = new SyncEngine({
      db: this.db,
      http,
      workspaceId: id,
      clock: this.clock,
      events: this.events,
      options: syncOptions,
      status: this.status,
      realtimeLive: () => this.realtime?.state === 'live',
      socket: this.socketSync,
    });
    this.files = new TransferQueue(this.db, http, id, this.events, { ...DEFAULT_TRANSFER_OPTIONS, ...options.transfers });
  }

  async start() {
    await this.db.open();
    // The clock resumes past every stamp this device issued, even if the wall clock went back.
    const state = await this.sync.state();
    if (state.hlcWall) this.clock.observe(`${String(state.hlcWall).padStart(15, '0')}:${String(state.hlcCounter).padStart(6, '0')}:`);
    const lastOp = await this.db.pending_ops.orderBy('seq').last();
    if (lastOp) this.clock.observe(lastOp.hlc);
    this.status.update({ lastSyncedAt: state.lastSyncedAt ?? null });
    await this.sync.outboxChanged();
    this.#detachNetwork = listenNetwork({
      online: () => {
        this.realtime?.reconnectNow();
        this.sync.urgentWake();
      },
      offline: () => {
        this.realtime?.offline();
        this.sync.urgentWake(); // the loop notices and says offline
      },
    });
    this.realtime?.start();
    this.sync.start();
    await this.files.start();
  }

  #captured() {
    void this.sync.outboxChanged();
    this.sync.wake();
    // Persist the clock soon after a burst of writes (not in the write's own transaction).
    this.#persistTimer ??= setTimeout(() => {
      this.#persistTimer = null;
      const { wall, counter } = this.clock.state;
      // One transaction, touching only the clock fields: never races a cursor update.
      void this.db
        .transaction('rw', this.db.sync_state, async () => {
          if (!(await this.db.sync_state.update('state', { hlcWall: wall, hlcCounter: counter })))
            await this.db.sync_state.add({ id: 'state', cursor: 0, hlcWall: wall, hlcCounter: counter });
        })
        .catch(() => undefined);
    }, 250);
  }

  async failedOps(): Promise<FailedOp[]> {
    return (await this.db.pending_ops.filter((op) => op.error !== undefined).toArray()).map(failedOp);
  }

  async retryFailedOps(): Promise<void> {
    await this.db.pending_ops.toCollection().modify((op) => void delete op.error);
    await this.sync.outboxChanged();
    this.sync.wake();
  }

  async discardFailedOps(): Promise<void> {
    await this.db.pending_ops.filter((op) => op.error !== undefined).delete();
    await this.sync.outboxChanged();
  }

  onClose(handler: () => void) {
    this.#closeHandlers.push(handler);
  }

  async close(): Promise<void> {
    if (this.#persistTimer) clearTimeout(this.#persistTimer);
    this.#detachNetwork();
    this.presence.close();
    this.realtime?.stop();
    this.files.close();
    await this.sync.stop();
    this.db.close();
    for (const h of this.#closeHandlers.splice(0)) h();
  }
}

/**
 * One open workspace. Get it from `client.openWorkspace()`.
 *
 *   const ws = await client.openWorkspace();
 *   await ws.db.messages.put({ id, thread_id, role: 'user', index, order_key, deleted: false, created_at, updated_at });
 *   ws.on('status', (s) => console.log(s.phase, s.pending));
 */
export class Or3Workspace {
  readonly #engine: WorkspaceEngine;
  /** The workspace's id. */
  readonly id: string;
  /** The signed-in user this workspace was opened for. */
  readonly userId: string;
  /** This device's id for that user (in change stamps, cursors and presence). */
  readonly deviceId: string;
  /** The local database (Dexie): the synced tables, typed. Write to it with plain Dexie calls; every write is synced. */
  readonly db: Or3Database;
  /** File bytes by hash: from the local cache, or downloaded, verified against the hash, and cached. */
  readonly files: { get(hash: string): Promise<Blob> };
  /** This device's presence state and the workspace's roster. */
  readonly presence: Or3Presence;

  /** @internal `client.openWorkspace()` creates it. */
  constructor(engine: WorkspaceEngine) {
    this.#engine = engine;
    this.id = engine.id;
    this.userId = engine.userId;
    this.deviceId = engine.deviceId;
    this.db = engine.db;
    this.files = Object.freeze({ get: (hash: string) => engine.files.get(hash) });
    this.presence = new Or3Presence(engine.presence);
    hide(this, engine);
  }

  /** Listens to an event (`status`, `change`, `conflict`, `rejected`, `transfer`, `presence`); returns the unsubscribe function. */
  on<K extends keyof WorkspaceEvents>(event: K, listener: (payload: WorkspaceEvents[K]) => void): () => void {
    return this.#engine.events.on(event, listener);
  }

  /** The sync status now (an immutable value; the `status` event carries each new one). */
  get status(): SyncStatus {
    return this.#engine.status.current;
  }

  /** Pushes and pulls now; resolves after a full successful round, rejects on a permanent error (e.g. signed out). */
  syncNow(): Promise<void> {
    return this.#engine.sync.syncNow();
  }

  /**
   * Stores a file locally, writes its `file_meta` row (synced) and queues the upload; resolves
   * with its hash (for a message's `file_hashes`) once queued. `transfer` events report progress.
   */
  upload(blob: Blob, input: UploadInput): Promise<{ hash: string; transferId: string }> {
    return this.#engine.files.upload(blob, input);
  }

  /** Local writes the server refused for good (validation, role, conflict), with its error. Their effect was taken back locally. */
  failedOps(): Promise<FailedOp[]> {
    return this.#engine.failedOps();
  }

  /** Sends refused writes again (e.g. after the user was given a role that allows them). */
  retryFailedOps(): Promise<void> {
    return this.#engine.retryFailedOps();
  }

  /** Forgets refused writes. */
  discardFailedOps(): Promise<void> {
    return this.#engine.discardFailedOps();
  }

  /** Stops syncing, leaves the roster and closes the database. */
  close(): Promise<void> {
    return this.#engine.close();
  }
}

const noWebSocketReason = (pollMs: number) =>
  `This runtime has no global WebSocket, so realtime and presence are off and changes arrive by polling every ${pollMs / 1000} s. ` +
  'Pass one as the WebSocket option, e.g. createOr3Client({ WebSocket }) with `import WebSocket from \'ws\'`, or run Node >= 22 (docs/client.md "Node").';

let warnedNoWebSocket = false;
function warnNoWebSocket(pollMs: number) {
  if (warnedNoWebSocket) return;
  warnedNoWebSocket = true;
  console.warn(`@or3-edge/client: ${noWebSocketReason(pollMs)}`);
}
