/**
 * `Or3Client`: one server and one signed-in user on this device. Signs in (basic auth, or any
 * identity provider the server trusts), reads the session, manages workspaces and opens them
 * (`Or3Workspace`). Its request layer stays private; every route the SDK uses is wrapped here or
 * in the workspace.
 */
import { Dexie, type Table } from 'dexie';
import { BasicAuth, type TokenStore, type Tokens } from './auth.js';
import { Emitter } from './events.js';
import { HttpClient, type AuthAdapter, type FetchLike } from './http.js';
import { hide } from './internal.js';
import type { SyncOptions } from './loop.js';
import type { PresenceOptions } from './presence.js';
import type { WebSocketLike } from './realtime.js';
import type { TransferOptions } from './transfers.js';
import { Or3Workspace, WorkspaceEngine } from './workspace.js';

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
  /** The WebSocket class for realtime; `null` turns realtime (and presence) off: polling only. Default: the global one. */
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
  presence?: Partial<PresenceOptions>;
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

export interface WorkspaceMember {
  userId: string;
  email?: string;
  displayName?: string;
  role: 'owner' | 'editor' | 'viewer';
}

/** The server's email/password sign-in (`client.basicAuth`). */
export interface BasicAuthApi {
  signIn(email: string, password: string): Promise<void>;
  register(input: { email: string; password: string; displayName?: string; inviteToken?: string }): Promise<void>;
  /** Ends the session on the server (when reachable) and forgets the tokens. */
  signOut(): Promise<void>;
  /** Rotates the tokens now; false when the session has ended. */
  refresh(): Promise<boolean>;
}

export interface ClientEvents extends Record<string, unknown> {
  /** The session ended without the app asking (a refresh was refused): show sign-in. Not emitted by `signOut()`. */
  signedOut: { reason: 'refresh_refused' };
}

interface DeviceSetting {
  key: string;
  value: unknown;
}

type DeviceDb = Dexie & { settings: Table<DeviceSetting, string> };

/** @internal What tests may reach behind the façade (internal.ts). */
export interface ClientInternals {
  http: HttpClient;
  auth: AuthAdapter;
}

export class Or3Client {
  readonly #http: HttpClient;
  readonly #auth: AuthAdapter;
  readonly #basic: BasicAuthApi | null;
  readonly #events = new Emitter<ClientEvents>();
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
    let basic: BasicAuth | null = null;
    if (options.auth && options.auth !== 'basic') {
      this.#auth = options.auth;
    } else {
      const transport = options.transport ?? (origin && new URL(baseUrl).origin === origin ? 'cookie' : 'bearer');
      const key = `tokens:${new URL(baseUrl).origin}`;
      const store: TokenStore = options.tokenStore ?? {
        load: async () => ((await this.#device.settings.get(key))?.value as Tokens | undefined) ?? null,
        save: async (tokens) => void (tokens ? await this.#device.settings.put({ key, value: tokens }) : await this.#device.settings.delete(key)),
      };
      this.#auth = basic = new BasicAuth(transport, store, () => this.#events.emit('signedOut', { reason: 'refresh_refused' }));
    }
    this.#http = new HttpClient(baseUrl, fetchImpl, () => this.#auth, options.timeoutMs);
    basic?.attach(this.#http);
    this.#basic = basic
      ? Object.freeze({
          signIn: (email: string, password: string) => basic.signIn(email, password),
          register: (input: Parameters<BasicAuthApi['register']>[0]) => basic.register(input),
          signOut: () => basic.signOut(),
          refresh: () => basic.refresh(),
        })
      : null;
    hide(this, { http: this.#http, auth: this.#auth } satisfies ClientInternals);
  }

  /** The built-in email/password sign-in (throws when another auth adapter is configured). */
  get basicAuth(): BasicAuthApi {
    if (!this.#basic) throw new Error('or3 client: not using basic auth');
    return this.#basic;
  }

  /** Listens to a client event (`signedOut`); returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * This device's stable id for a user (one per browser profile and account: the server binds a
   * device id to the user whose cursor it is), used in change stamps, cursors and presence.
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
    const { session } = await this.#http.json<{ session: SessionContext | null }>('GET', '/api/auth/session');
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

  /** The workspace routes: list, create, switch, members and roles, invites. */
  readonly workspaces = Object.freeze({
    list: async () => (await this.#http.json<{ workspaces: WorkspaceSummary[] }>('GET', '/api/workspaces')).workspaces,
    create: async (name: string, description?: string) =>
      (await this.#http.json<{ id: string }>('POST', '/api/workspaces', { name, ...(description ? { description } : {}) })).id,
    setActive: async (id: string) => void (await this.#http.json('POST', '/api/workspaces/active', { id })),
    members: async (id: string) => (await this.#http.json<{ members: WorkspaceMember[] }>('GET', `/api/workspaces/${encodeURIComponent(id)}/members`)).members,
    setRole: async (id: string, userId: string, role: 'owner' | 'editor' | 'viewer') =>
      void (await this.#http.json('PUT', `/api/workspaces/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`, { role })),
    removeMember: async (id: string, userId: string) =>
      void (await this.#http.json('DELETE', `/api/workspaces/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`)),
    invite: async (id: string, role: 'editor' | 'viewer' | 'owner', expiresInSeconds?: number) =>
      this.#http.json<{ inviteToken: string; expiresAt: string }>('POST', `/api/workspaces/${encodeURIComponent(id)}/invites`, {
        role,
        ...(expiresInSeconds ? { expiresInSeconds } : {}),
      }),
    acceptInvite: async (inviteToken: string) => this.#http.json<{ workspaceId?: string }>('POST', '/api/workspaces/invites/accept', { inviteToken }),
  });

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
    const engine = new WorkspaceEngine(this.#http, id, userId, deviceId, this.#options, this.#prefix);
    await engine.start();
    const ws = new Or3Workspace(engine);
    this.#open.add(ws);
    engine.onClose(() => this.#open.delete(ws));
    return ws;
  }

  /** Stops every open workspace and closes the databases. */
  async close(): Promise<void> {
    await Promise.all([...this.#open].map((ws) => ws.close()));
    this.#device.close();
  }
}
