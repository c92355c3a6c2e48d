/**
 * or3-edge client: local-first sync and attachments over the OR3 HTTP contract.
 *
 *   const client = createOr3Client({ baseUrl: 'https://edge.example.com' });
 *   await client.auth.signIn(email, password);
 *   const ws = await client.openWorkspace();          // the session's active workspace
 *   await ws.db.messages.put({ id, thread_id, ... });  // written locally, synced in the background
 *   ws.on('status', ({ status }) => ...);
 *
 * See docs/client.md for the full reference.
 */
import { Dexie, type Table } from 'dexie';
import { BasicAuth, ExternalTokenAuth, type TokenStore, type Tokens } from './auth.js';
import { openDatabase, type Or3Database, type PendingOp } from './db.js';
import { Emitter } from './events.js';
import { HybridClock } from './hlc.js';
import { HttpClient, type AuthAdapter, type FetchLike } from './http.js';
import type { WebSocketLike } from './realtime.js';
import { DEFAULT_SYNC_OPTIONS, SyncEngine, type SyncEvents, type SyncOptions, type SyncStatus } from './sync.js';
import { DEFAULT_TRANSFER_OPTIONS, TransferQueue, type TransferEvents, type TransferOptions, type UploadInput } from './transfers.js';

export { BasicAuth, ExternalTokenAuth, memoryTokenStore, type TokenStore, type Tokens } from './auth.js';
export { compareRevisions, SYNCED_TABLES, type FileTransfer, type Or3Database, type PendingOp, type Row, type SyncedTable } from './db.js';
export { formatHlc, HybridClock, parseHlc } from './hlc.js';
export { Or3Error, type AuthAdapter, type FetchLike } from './http.js';
export { hashBlob } from './hash.js';
export type { SyncChange, SyncEvents, SyncOptions, SyncStatus } from './sync.js';
export type { TransferEvents, TransferOptions, TransferProgress, UploadInput } from './transfers.js';
export type { WebSocketLike } from './realtime.js';

export interface Or3ClientOptions {
  /** The server, e.g. `https://edge.example.com`. Default: the page's own origin. */
  baseUrl?: string;
  /** `'basic'` (default): the server's email/password. Or any adapter, e.g. `new ExternalTokenAuth(getToken)`. */
  auth?: 'basic' | AuthAdapter;
  /** Basic auth transport. Default: `cookie` when `baseUrl` is the page's origin, else `bearer`. */
  transport?: 'cookie' | 'bearer';
  /** Where bearer tokens are kept. Default: this device's IndexedDB. */
  tokenStore?: TokenStore;
  fetch?: FetchLike;
  /** The WebSocket class for realtime; `null` turns realtime off (polling only). Default: the global one. */
  WebSocket?: (new (url: string) => WebSocketLike) | null;
  /** IndexedDB to use (tests pass fake-indexeddb). Default: the global one. */
  indexedDB?: IDBFactory;
  IDBKeyRange?: typeof IDBKeyRange;
  /** Prefix of the IndexedDB database names. */
  databasePrefix?: string;
  /** Per-request timeout (ms), default 30 s. */
  timeoutMs?: number;
  sync?: Partial<SyncOptions>;
  transfers?: Partial<TransferOptions>;
}

export interface SessionContext {
  authenticated: boolean;
  provider?: string;
  user?: { id: string; email?: string; displayName?: string };
  workspace?: { id: string; name: string };
  role?: 'owner' | 'editor' | 'viewer';
  expiresAt?: string;
  deploymentAdmin?: boolean;
}

export interface WorkspaceSummary {
  id: string;
  name: string;
  description: string | null;
  role: 'owner' | 'editor' | 'viewer';
  /** Epoch milliseconds. */
  createdAt: number;
  isActive: boolean;
}

interface DeviceSetting {
  key: string;
  value: unknown;
}

type DeviceDb = Dexie & { settings: Table<DeviceSetting, string> };

export class Or3Client {
  readonly http: HttpClient;
  readonly auth: AuthAdapter;
  readonly #device: DeviceDb;
  readonly #options: Or3ClientOptions;
  readonly #prefix: string;
  #deviceIds = new Map<string, Promise<string>>();
  #open = new Set<Or3Workspace>();

  constructor(options: Or3ClientOptions = {}) {
    this.#options = options;
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
    const baseUrl = options.baseUrl ?? origin;
    if (!baseUrl) throw new Error('or3 client: baseUrl is required outside a browser page');
    this.#prefix = options.databasePrefix ?? 'or3-edge';
    const deps = options.indexedDB ? { indexedDB: options.indexedDB, IDBKeyRange: options.IDBKeyRange } : undefined;
    this.#device = new Dexie(`${this.#prefix}:device`, deps) as DeviceDb;
    this.#device.version(1).stores({ settings: 'key' });

    const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
    if (options.auth && options.auth !== 'basic') {
      this.auth = options.auth;
    } else {
      const transport = options.transport ?? (origin && new URL(baseUrl).origin === origin ? 'cookie' : 'bearer');
      const key = `tokens:${new URL(baseUrl).origin}`;
      const store: TokenStore = options.tokenStore ?? {
        load: async () => ((await this.#device.settings.get(key))?.value as Tokens | undefined) ?? null,
        save: async (tokens) => void (tokens ? await this.#device.settings.put({ key, value: tokens }) : await this.#device.settings.delete(key)),
      };
      this.auth = new BasicAuth(transport, store);
    }
    this.http = new HttpClient(baseUrl, fetchImpl, () => this.auth, options.timeoutMs);
    if (this.auth instanceof BasicAuth) this.auth.attach(this.http);
  }

  /** The built-in email/password adapter (throws when another adapter is configured). */
  get basicAuth(): BasicAuth {
    if (!(this.auth instanceof BasicAuth)) throw new Error('or3 client: not using basic auth');
    return this.auth;
  }

  /**
   * This device's stable id for a user (one per browser profile and account: the server binds a
   * device id to the user whose cursor it is), used in change stamps and cursors.
   */
  deviceId(userId: string): Promise<string> {
    let pending = this.#deviceIds.get(userId);
    if (!pending) {
      pending = (async () => {
        const key = `deviceId:${userId}`;
        const existing = await this.#device.settings.get(key);
        if (typeof existing?.value === 'string') return existing.value;
        const id = `dev-${crypto.randomUUID()}`;
        await this.#device.settings.put({ key, value: id });
        return id;
      })();
      this.#deviceIds.set(userId, pending);
    }
    return pending;
  }

  /** The server's view of the caller (provisions the user and a default workspace on first sight). Cached for offline starts. */
  async session(): Promise<SessionContext | null> {
    const { session } = await this.http.json<{ session: SessionContext | null }>('GET', '/api/auth/session');
    await this.#device.settings.put({ key: 'session', value: session });
    return session;
  }

  /** Forgets the cached session (call it on sign-out), so an offline start cannot open the last account. */
  async forgetSession(): Promise<void> {
    await this.#device.settings.delete('session');
  }

  /** The last session seen, without the network. */
  async cachedSession(): Promise<SessionContext | null> {
    return ((await this.#device.settings.get('session'))?.value as SessionContext | null | undefined) ?? null;
  }

  readonly workspaces = {
    list: async () => (await this.http.json<{ workspaces: WorkspaceSummary[] }>('GET', '/api/workspaces')).workspaces,
    create: async (name: string, description?: string) =>
      (await this.http.json<{ id: string }>('POST', '/api/workspaces', { name, ...(description ? { description } : {}) })).id,
    setActive: async (id: string) => void (await this.http.json('POST', '/api/workspaces/active', { id })),
    members: async (id: string) =>
      (
        await this.http.json<{ members: { userId: string; email?: string; displayName?: string; role: string }[] }>(
          'GET',
          `/api/workspaces/${encodeURIComponent(id)}/members`,
        )
      ).members,
    setRole: async (id: string, userId: string, role: 'owner' | 'editor' | 'viewer') =>
      void (await this.http.json('PUT', `/api/workspaces/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`, { role })),
    removeMember: async (id: string, userId: string) =>
      void (await this.http.json('DELETE', `/api/workspaces/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`)),
    invite: async (id: string, role: 'editor' | 'viewer' | 'owner', expiresInSeconds?: number) =>
      this.http.json<{ inviteToken: string; expiresAt: string }>('POST', `/api/workspaces/${encodeURIComponent(id)}/invites`, {
        role,
        ...(expiresInSeconds ? { expiresInSeconds } : {}),
      }),
    acceptInvite: async (inviteToken: string) => this.http.json<{ workspaceId?: string }>('POST', '/api/workspaces/invites/accept', { inviteToken }),
  };

  /**
   * Opens a workspace's local database and starts syncing it. Without an id, the session's
   * active workspace. Works offline when the session was seen before.
   */
  async openWorkspace(workspaceId?: string): Promise<Or3Workspace> {
    let session = await this.cachedSession();
    if (!session?.user || (!workspaceId && !session.workspace)) session = await this.session();
    const userId = session?.user?.id;
    const id = workspaceId ?? session?.workspace?.id;
    if (!userId || !id) throw new Error('or3 client: sign in first (no session)');
    const deviceId = await this.deviceId(userId);
    const ws = new Or3Workspace(this, id, userId, deviceId, this.#options, this.#prefix);
    await ws.start();
    this.#open.add(ws);
    ws.onClose(() => this.#open.delete(ws));
    return ws;
  }

  /** Stops every open workspace and closes the databases. */
  async close(): Promise<void> {
    await Promise.all([...this.#open].map((ws) => ws.close()));
    this.#device.close();
  }
}

type WorkspaceEvents = SyncEvents & TransferEvents;

export class Or3Workspace {
  readonly db: Or3Database;
  readonly files: TransferQueue;
  readonly sync: SyncEngine;
  readonly clock: HybridClock;
  readonly #events = new Emitter<WorkspaceEvents>();
  #closeHandlers: (() => void)[] = [];
  #persistTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly client: Or3Client,
    readonly id: string,
    readonly userId: string,
    readonly deviceId: string,
    options: Or3ClientOptions,
    prefix: string,
  ) {
    this.clock = new HybridClock(deviceId);
    const deps = options.indexedDB ? { indexedDB: options.indexedDB, IDBKeyRange: options.IDBKeyRange } : {};
    // One database per (user, workspace): two accounts on one device never share rows.
    this.db = openDatabase(`${prefix}:${userId}:${id}`, { clock: this.clock, onCaptured: () => this.#captured() }, deps);
    const WebSocketImpl =
      options.WebSocket === null ? undefined : (options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket);
    this.sync = new SyncEngine(
      this.db,
      client.http,
      id,
      this.clock,
      this.#events as unknown as Emitter<SyncEvents>,
      { ...DEFAULT_SYNC_OPTIONS, ...options.sync },
      WebSocketImpl,
    );
    this.files = new TransferQueue(this.db, client.http, id, this.#events as unknown as Emitter<TransferEvents>, {
      ...DEFAULT_TRANSFER_OPTIONS,
      ...options.transfers,
    });
  }

  async start() {
    await this.db.open();
    // The clock resumes past every stamp this device issued, even if the wall clock went back.
    const state = await this.db.sync_state.get('state');
    if (state) this.clock.observe(`${String(state.hlcWall).padStart(15, '0')}:${String(state.hlcCounter).padStart(6, '0')}:`);
    const lastOp = await this.db.pending_ops.orderBy('seq').last();
    if (lastOp) this.clock.observe(lastOp.hlc);
    this.sync.start();
    await this.files.start();
    await this.sync.emitPending();
  }

  #captured() {
    void this.sync.emitPending();
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

  on<K extends keyof WorkspaceEvents>(event: K, listener: (payload: WorkspaceEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  get status(): SyncStatus {
    return this.sync.status;
  }

  /** Push and pull now; resolves after a full successful round (rejects on a permanent error). */
  syncNow(): Promise<void> {
    return this.sync.syncNow();
  }

  /** Ops the server refused for good (validation, role, conflict), with their errors. */
  failedOps(): Promise<PendingOp[]> {
    return this.db.pending_ops.filter((op) => op.error !== undefined).toArray();
  }

  /** Sends refused ops again (e.g. after the user was given a role that allows them). */
  async retryFailedOps(): Promise<void> {
    await this.db.pending_ops.toCollection().modify((op) => void delete op.error);
    await this.sync.emitPending();
    this.sync.wake();
  }

  /** Drops refused ops from the outbox. The local rows keep their values until the next remote change. */
  async discardFailedOps(): Promise<void> {
    await this.db.pending_ops.filter((op) => op.error !== undefined).delete();
    await this.sync.emitPending();
  }

  upload(blob: Blob, input: UploadInput) {
    return this.files.upload(blob, input);
  }

  onClose(handler: () => void) {
    this.#closeHandlers.push(handler);
  }

  async close(): Promise<void> {
    if (this.#persistTimer) clearTimeout(this.#persistTimer);
    this.files.close();
    await this.sync.stop();
    this.db.close();
    for (const h of this.#closeHandlers.splice(0)) h();
  }
}

export function createOr3Client(options: Or3ClientOptions = {}): Or3Client {
  return new Or3Client(options);
}
