/**
 * Test plumbing for the client SDK: the real Worker (this repo's wrangler.toml, Durable Objects,
 * D1, R2) started locally by wrangler's test harness, and "devices": SDK clients with their own
 * IndexedDB (fake-indexeddb), their own IP, a switch to go offline, and a fault plan for fetch.
 */
import { fileURLToPath } from 'node:url';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { readD1Migrations } from '@cloudflare/vitest-plugin';
import { createTestHarness } from 'wrangler';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { BasicAuth } from '../src/auth';
import type { ClientInternals } from '../src/client';
import { createOr3Client, type Or3Client, type Or3ClientOptions, type Or3Workspace, type WebSocketLike } from '../src/index';
import { reveal } from '../src/internal';
import type { WorkspaceEngine } from '../src/workspace';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface TestServer {
  url: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  env: any;
  /** SQL run inside a workspace's object (the harness's `getDurableObjectStorage`), to age its data for GC; absent for a server started by `wrangler dev`. */
  workspaceSql?(workspaceId: string): Promise<{ exec(query: string, ...bindings: unknown[]): Promise<unknown[]> }>;
  close(): Promise<void>;
}

export async function startServer(vars: Record<string, string> = {}): Promise<TestServer> {
  const harness = createTestHarness({
    root,
    workers: [
      {
        configPath: './wrangler.toml',
        vars: {
          ENVIRONMENT: 'development',
          OR3_BASIC_AUTH_REGISTRATION: 'open',
          // Tests retry on purpose; the per-minute sync limits are tested in the Worker suite.
          OR3_RATE_LIMIT_OVERRIDES_JSON: JSON.stringify({ push: 100_000, pull: 100_000, updateCursor: 100_000, gc: 1_000 }),
          ...vars,
        },
      },
    ],
  });
  const { url } = await harness.listen();
  const env = await harness.getWorker().getEnv();
  for (const migration of await readD1Migrations(`${root}/migrations/d1`)) {
    await env.DB.batch(migration.queries.map((q: string) => env.DB.prepare(q)));
  }
  const workspaceSql = async (workspaceId: string) => {
    const storage = await harness.getWorker().getDurableObjectStorage('WORKSPACE', { name: workspaceId });
    return { exec: (query: string, ...bindings: unknown[]) => storage.exec(query, ...(bindings as never[])) };
  };
  return { url: url.toString(), env, workspaceSql, close: () => harness.close() };
}

export type Fault = 'drop-before' | 'drop-after' | 'timeout' | { status: number; retryAfter?: number };

export interface Device {
  client: Or3Client;
  /** Every request this device sent, in order: `METHOD path`. */
  calls: string[];
  online: boolean;
  /** Decides a fault for each request (null: let it through). */
  faults: ((call: { method: string; path: string; n: number }) => Fault | null) | null;
}

let ipCounter = 0;

export function device(server: TestServer, options: Partial<Or3ClientOptions> = {}): Device {
  const ip = `10.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}.${1 + Math.floor(Math.random() * 250)}`;
  let online = true;
  const sockets = new Set<WebSocket>();
  const state: Device = {
    client: undefined as unknown as Or3Client,
    calls: [],
    // Offline is offline for the socket too: open ones drop, new ones fail.
    get online() {
      return online;
    },
    set online(value: boolean) {
      online = value;
      if (!value) for (const socket of sockets) socket.close(4999, 'device offline');
    },
    faults: null,
  };
  class DeviceSocket extends WebSocket {
    constructor(url: string | URL) {
      if (!online) throw new TypeError('WebSocket failed (device offline)');
      super(url);
      sockets.add(this);
      this.addEventListener('close', () => sockets.delete(this));
    }
  }
  const fetchImpl = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const method = init.method ?? 'GET';
    const n = state.calls.push(`${method} ${url.pathname}`);
    if (!state.online) throw new TypeError('fetch failed (device offline)');
    const fault = state.faults?.({ method, path: url.pathname, n }) ?? null;
    if (fault === 'drop-before') throw new TypeError('fetch failed (injected)');
    if (fault === 'timeout') {
      // Hang until the client's own timeout aborts the request.
      return new Promise((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(init.signal!.reason), { once: true }));
    }
    if (fault && typeof fault === 'object') {
      return new Response(JSON.stringify({ error: 'injected', message: `injected ${fault.status}` }), {
        status: fault.status,
        headers: { 'content-type': 'application/json', ...(fault.retryAfter ? { 'retry-after': String(fault.retryAfter) } : {}) },
      });
    }
    const headers = new Headers(init.headers);
    headers.set('cf-connecting-ip', ip);
    const res = await fetch(url, { ...init, headers });
    if (fault === 'drop-after') {
      await res.arrayBuffer(); // the server did the work; the answer is lost
      throw new TypeError('fetch failed (injected, after the server answered)');
    }
    return res;
  };
  state.client = createOr3Client({
    baseUrl: server.url,
    indexedDB: new IDBFactory(),
    IDBKeyRange,
    fetch: fetchImpl,
    transport: 'bearer',
    timeoutMs: 5_000,
    WebSocket: DeviceSocket as unknown as new (url: string) => WebSocketLike,
    ...options,
    sync: { pollIntervalMs: 500, realtimePollIntervalMs: 60_000, backoff: { baseMs: 50, maxMs: 400 }, circuitCooldownMs: 500, ...options.sync },
    transfers: { backoff: { baseMs: 50, maxMs: 400 }, ...options.transfers },
  });
  return state;
}

/** Behind the façades (the SDK's tests only): a workspace's engine (sync loop, local tables, transfers), a client's request layer. */
export const engineOf = (ws: Or3Workspace) => reveal<WorkspaceEngine>(ws);
export const internalsOf = (client: Or3Client) => reveal<ClientInternals>(client);
export const basicAuthOf = (client: Or3Client) => internalsOf(client).auth as BasicAuth;

export const PASSWORD = 'correct horse battery staple';
export const uniqueEmail = (tag = 'user') => `${tag}-${crypto.randomUUID().slice(0, 8)}@example.com`;

/** Polls `check` until it returns a truthy value (or throws after `timeoutMs`). */
export async function until<T>(check: () => Promise<T> | T, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export const messageRow = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  thread_id: 't1',
  role: 'user',
  index: 0,
  order_key: 'a0',
  deleted: false,
  created_at: nowSeconds(),
  updated_at: nowSeconds(),
  clock: 0,
  data: 'hello',
  ...extra,
});

/**
 * One server for the test file (with `vars` over the defaults), started before its tests and
 * closed after them; workspaces pushed onto `open` are closed after each test.
 */
export function serverPerFile(vars: Record<string, string> = {}): { readonly server: TestServer; open: Or3Workspace[] } {
  const state = { server: undefined as unknown as TestServer, open: [] as Or3Workspace[] };
  beforeAll(async () => {
    state.server = await startServer(vars);
  });
  afterEach(async () => {
    await Promise.all(state.open.splice(0).map((ws) => ws.close()));
  });
  afterAll(async () => {
    await state.server?.close();
  });
  return state;
}
