/**
 * The realtime subscription of one workspace: a WebSocket to `/api/sync/ws` that tells the sync
 * loop when the server has something new (`hello` on connect, `poke` after each commit), so a
 * change shows up on other devices without waiting for a poll. A poke of a small commit carries
 * its changes; the sync loop applies them when they start at its cursor, and pulls otherwise.
 *
 * It authenticates with a single-use ticket from `POST /api/sync/ws-ticket` (browsers cannot set
 * headers on a WebSocket, and the ticket works for cookie, bearer and external-token auth
 * alike). It reconnects with backoff when the socket drops and sends a `ping` every 30 s so idle
 * proxies keep it open; while it is down the sync loop polls instead.
 */
import { backoffDelay, type BackoffOptions } from './backoff.js';
import type { HttpClient } from './http.js';
import type { SyncChange } from './db.js';

/** A poke that carried its commit's changes: what a pull from `fromVersion` would return. */
export interface PokedChanges {
  fromVersion: number;
  serverVersion: number;
  changes: SyncChange[];
}

/** The part of the WebSocket API the SDK uses (browser WebSocket and Node 22's global both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

const PING_INTERVAL_MS = 30_000;
const OPEN = 1;

export class Realtime {
  #socket: WebSocketLike | null = null;
  #stopped = true;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #ping: ReturnType<typeof setInterval> | null = null;
  /** A connect is under way (waiting for its ticket): no second one. */
  #connecting = false;
  open = false;

  constructor(
    private readonly http: HttpClient,
    private readonly workspaceId: string,
    private readonly WebSocketImpl: new (url: string) => WebSocketLike,
    private readonly backoff: BackoffOptions,
    private readonly handlers: { onVersion: (serverVersion: number) => void; onChanges: (poked: PokedChanges) => void; onOpenChange: (open: boolean) => void },
  ) {}

  start() {
    this.#stopped = false;
    void this.#connect();
  }

  stop() {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#teardown();
  }

  /** After coming back online: skip the rest of the backoff. */
  reconnectNow() {
    if (this.#stopped || this.open || this.#connecting) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#attempt = 0;
    void this.#connect();
  }

  #teardown() {
    if (this.#ping) clearInterval(this.#ping);
    this.#ping = null;
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.onclose = socket.onerror = socket.onmessage = socket.onopen = null;
      try {
        socket.close(1000, 'client closing');
      } catch {
        // already closed
      }
    }
    this.#setOpen(false);
  }

  #setOpen(open: boolean) {
    if (open === this.open) return;
    this.open = open;
    this.handlers.onOpenChange(open);
  }

  #retry() {
    this.#teardown();
    if (this.#stopped) return;
    this.#attempt++;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#connect(), backoffDelay(this.#attempt, this.backoff));
  }

  async #connect() {
    if (this.#stopped || this.#connecting) return;
    this.#connecting = true;
    try {
      await this.#dial();
    } finally {
      this.#connecting = false;
    }
  }

  async #dial() {
    if (this.#stopped) return;
    // Offline (browsers say so): wait; the 'online' event calls reconnectNow().
    if ((globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false) return this.#retry();
    let ticket: string;
    try {
      ({ ticket } = await this.http.json<{ ticket: string }>('POST', '/api/sync/ws-ticket', { workspaceId: this.workspaceId }));
    } catch {
      return this.#retry();
    }
    if (this.#stopped) return;
    const url = new URL('/api/sync/ws', this.http.baseUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('workspaceId', this.workspaceId);
    url.searchParams.set('ticket', ticket);
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(url.toString());
    } catch {
      return this.#retry();
    }
    this.#teardown(); // never two sockets
    this.#socket = socket;
    socket.onopen = () => {
      this.#attempt = 0;
      this.#setOpen(true);
      this.#ping = setInterval(() => socket.readyState === OPEN && socket.send('ping'), PING_INTERVAL_MS);
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data !== 'string' || ev.data === 'pong') return;
      try {
        const msg = JSON.parse(ev.data) as { type?: string; serverVersion?: number; fromVersion?: number; changes?: SyncChange[] };
        if ((msg.type === 'hello' || msg.type === 'poke') && typeof msg.serverVersion === 'number') {
          if (msg.type === 'poke' && typeof msg.fromVersion === 'number' && Array.isArray(msg.changes)) {
            this.handlers.onChanges({ fromVersion: msg.fromVersion, serverVersion: msg.serverVersion, changes: msg.changes });
          } else {
            this.handlers.onVersion(msg.serverVersion);
          }
        }
      } catch {
        // not ours; ignore
      }
    };
    // 4003: this user lost access to the workspace; reconnecting cannot help.
    socket.onclose = (ev) => ((ev as { code?: number }).code === 4003 ? this.stop() : this.#retry());
    socket.onerror = () => this.#retry();
  }
}
