/**
 * The realtime socket of one workspace: a WebSocket to `/api/sync/ws` that tells the sync loop
 * when the server has something new (`hello` on connect, `poke` after each commit) and carries
 * presence both ways. A poke of a small commit carries its changes; the sync loop applies them
 * when they start at its cursor, and pulls otherwise.
 *
 * It authenticates with a single-use ticket from `POST /api/sync/ws-ticket` (browsers cannot set
 * headers on a WebSocket, and the ticket works for cookie, bearer and external-token auth
 * alike), and names this device (`deviceId`) for presence. It sends `ping` every 10 s: the
 * server's presence counts a device silent after 30 s without one (docs/sync.md "Presence"),
 * and a socket whose ping goes unanswered for 30 s is presumed dead and replaced. It reconnects
 * with backoff when the socket drops, closes when the browser goes offline and comes back with
 * the network; while it is down the sync loop polls instead.
 */
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { PRESENCE, type Downstream, type PresenceMessage, type Reply, type Upstream } from '../../protocol/socket.js';
import type { SyncChange } from '../../protocol/sync.js';
import type { HttpClient } from './http.js';
import { isOffline } from './network.js';
import type { RealtimeState } from './status.js';

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

export interface RealtimeHandlers {
  /** `hello` (after connecting) or a poke without changes: the server is at this version. */
  onVersion(serverVersion: number): void;
  onChanges(poked: PokedChanges): void;
  onPresence(message: PresenceMessage): void;
  /** An answer to a request sent on the socket (sync over the socket, socket-sync.ts). */
  onReply(message: Reply): void;
  onState(state: RealtimeState): void;
}

/** A third of the server's silence limit, so two lost pings in a row do not drop this device from the roster. */
export const HEARTBEAT_MS = PRESENCE.silenceMs / 3;
const OPEN = 1;

export class Realtime {
  #socket: WebSocketLike | null = null;
  #stopped = true;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  #heardAt = 0;
  #pingedAt = 0;
  /** A connect is under way (waiting for its ticket): no second one. */
  #connecting = false;
  /** reconnectNow() came during a connect: if that one fails, the next starts at once. */
  #redial = false;
  #state: RealtimeState = 'connecting';

  constructor(
    private readonly http: HttpClient,
    private readonly workspaceId: string,
    private readonly deviceId: string,
    private readonly WebSocketImpl: new (url: string) => WebSocketLike,
    private readonly backoff: BackoffOptions,
    private readonly handlers: RealtimeHandlers,
  ) {}

  get state(): RealtimeState {
    return this.#state;
  }

  start() {
    this.#stopped = false;
    void this.#connect();
  }

  stop(state: RealtimeState = 'off') {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#teardown(state);
  }

  /** After coming back online (or a request got through while the socket is down): skip the rest of the backoff. */
  reconnectNow() {
    // Live, or a socket still opening (or waiting for its hello): nothing to hurry.
    if (this.#stopped || this.#state === 'live' || (this.#socket && this.#socket.readyState <= OPEN)) return;
    // A dial under way may still fail (it started before the network came back): then dial again at once.
    if (this.#connecting) return void (this.#redial = true);
    if (this.#timer) clearTimeout(this.#timer);
    this.#attempt = 0;
    void this.#connect();
  }

  /** The browser went offline: close now (a socket can outlive the network for minutes) and wait for `reconnectNow()`. */
  offline() {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#teardown('offline');
  }

  /** Sends a message on a live socket; false when there is none (the caller sends again after the next `hello`). */
  send(message: Upstream): boolean {
    if (this.#state !== 'live' || this.#socket?.readyState !== OPEN) return false;
    try {
      this.#socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  #teardown(state: RealtimeState) {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
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
    this.#setState(state);
  }

  #setState(state: RealtimeState) {
    if (state === this.#state) return;
    this.#state = state;
    this.handlers.onState(state);
  }

  #retry() {
    this.#teardown(isOffline() ? 'offline' : 'connecting');
    if (this.#stopped) return;
    // Offline too: the 'online' event calls reconnectNow(), but browsers do not always fire it.
    this.#attempt = this.#redial ? 0 : this.#attempt + 1;
    const delay = this.#redial ? 0 : backoffDelay(this.#attempt, this.backoff);
    this.#redial = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#connect(), delay);
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
    if (isOffline()) return this.#retry();
    this.#setState('connecting');
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
    url.searchParams.set('deviceId', this.deviceId);
    url.searchParams.set('ticket', ticket);
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(url.toString());
    } catch {
      return this.#retry();
    }
    this.#teardown('connecting'); // never two sockets
    this.#socket = socket;
    socket.onopen = () => {
      this.#attempt = 0;
      this.#redial = false;
      this.#heardAt = Date.now();
      this.#pingedAt = 0;
      this.#heartbeat = setInterval(() => {
        // A ping unanswered for 30 s: the connection is dead. (Measured from the ping, not from the
        // last message: a background tab's timers may run once a minute.)
        const unanswered = this.#pingedAt > this.#heardAt;
        if (unanswered && Date.now() - this.#pingedAt > PRESENCE.silenceMs) return this.#retry();
        if (socket.readyState === OPEN) socket.send('ping');
        if (!unanswered) this.#pingedAt = Date.now();
      }, HEARTBEAT_MS);
    };
    socket.onmessage = (ev) => {
      this.#heardAt = Date.now();
      if (typeof ev.data !== 'string' || ev.data === 'pong') return;
      let msg: Downstream;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // not ours
      }
      // The server's messages (protocol/socket.ts); anything else is ignored.
      switch (msg?.type) {
        case 'hello':
          if (typeof msg.serverVersion !== 'number') return;
          this.#setState('live');
          return this.handlers.onVersion(msg.serverVersion);
        case 'poke':
          if (typeof msg.serverVersion !== 'number') return;
          if (typeof msg.fromVersion === 'number' && Array.isArray(msg.changes)) {
            return this.handlers.onChanges({ fromVersion: msg.fromVersion, serverVersion: msg.serverVersion, changes: msg.changes });
          }
          return this.handlers.onVersion(msg.serverVersion);
        case 'presence':
        case 'presence-leave':
        case 'presence-roster':
          return this.handlers.onPresence(msg);
        case 'push-result':
        case 'changes':
        case 'cursor-result':
        case 'error':
          // Presence refusals carry no id: nothing waits for them.
          if (typeof msg.id === 'string') this.handlers.onReply(msg);
      }
    };
    // 4003: this user lost access to the workspace; reconnecting cannot help.
    socket.onclose = (ev) => ((ev as { code?: number }).code === 4003 ? this.stop('off') : this.#retry());
    socket.onerror = () => this.#retry();
  }
}
