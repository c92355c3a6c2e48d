/**
 * Sync over the workspace's socket (docs/sync.md "Sync over the socket"): while the realtime
 * socket is live, pushes, pulls and this device's cursor go as messages on it and the object
 * answers directly — no HTTP request, no Worker hop. Whenever the socket is not there, or drops
 * or stalls mid-request, the caller falls back to HTTP: a push replays idempotently (its opIds
 * are the same), a pull starts again from the cursor it had reached, a cursor is sent again.
 * The messages are the wire contract's (protocol/socket.ts); a refusal carries its HTTP status.
 */
import { socketError, type ChangesPage, type PushOpResult, type Reply, type Upstream, type UpstreamRequest } from '../../protocol/socket.js';
import { Or3Error } from './http.js';

/** The socket was not there, or went away or stalled before answering: use HTTP. */
export class SocketUnavailable extends Error {}

/** How long a request waits for its answer (or a pull for its next page) before giving up on the socket. */
const REPLY_TIMEOUT_MS = 15_000;
/** Pages the server may send ahead of our acknowledgements. */
const WINDOW = 4;

export interface PushReply {
  results: PushOpResult[];
  serverVersion: number;
}

export type PulledPage = ChangesPage;

interface Waiter {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

let sequence = 0;

export class SocketSync {
  readonly #waiting = new Map<string, Waiter>();

  constructor(
    /** Sends on the live socket; false when there is none. */
    private readonly send: (message: Upstream) => boolean,
    private readonly live: () => boolean,
  ) {}

  /** An answer from the server (push-result, changes, cursor-result, error with an id); true when it was ours. */
  receive(message: Reply): boolean {
    const waiter = typeof message.id === 'string' ? this.#waiting.get(message.id) : undefined;
    if (!waiter || typeof message.id !== 'string') return false;
    this.#waiting.delete(message.id);
    clearTimeout(waiter.timer);
    if (message.type === 'error') {
      // A server from before `status` sent none: judged as a bad request (permanent).
      const { status = 400, code, message: text, retryAfter } = socketError(message);
      waiter.reject(new Or3Error(status, code, text, typeof retryAfter === 'number' ? retryAfter * 1000 : undefined));
    } else waiter.resolve(message);
    return true;
  }

  /** The socket went away: whatever waits on it goes to HTTP. */
  closed() {
    for (const [id, waiter] of this.#waiting) {
      clearTimeout(waiter.timer);
      this.#waiting.delete(id);
      waiter.reject(new SocketUnavailable('the socket closed'));
    }
  }

  /** Whether pushes ask not to hear their own changes back (false once a server refused the field). */
  #echoless = true;

  /** Pushes a batch over the socket; `SocketUnavailable` when it cannot (then push over HTTP). */
  async push(ops: unknown[]): Promise<PushReply> {
    const id = this.#id('push');
    // `echo: false`: our own changes do not come back in this socket's poke (it still moves the
    // cursor); the push-result says what became of each op (push.ts marks them as the server's).
    // A server from before the field refuses it as unknown: then push as before, with the echo.
    try {
      const reply = await this.#request(id, { type: 'push', id, ops, ...(this.#echoless ? { echo: false as const } : {}) });
      if (reply.type !== 'push-result') throw new SocketUnavailable(`unexpected ${reply.type}`);
      return reply;
    } catch (err) {
      if (!this.#echoless || !(err instanceof Or3Error) || err.code !== 'invalid_body' || !err.message.includes("'echo'")) throw err;
      this.#echoless = false;
      return this.push(ops);
    }
  }

  /**
   * Records this device's cursor on the server (the HTTP update-cursor); `SocketUnavailable` when
   * it cannot (then over HTTP). A server from before the message refuses it as an unknown type:
   * then always HTTP.
   */
  async updateCursor(deviceId: string, version: number): Promise<void> {
    if (!this.#cursorMessage) throw new SocketUnavailable('the server has no cursor message');
    const id = this.#id('cursor');
    try {
      await this.#request(id, { type: 'cursor', id, deviceId, version });
    } catch (err) {
      if (err instanceof Or3Error && err.code === 'invalid_body') {
        this.#cursorMessage = false;
        throw new SocketUnavailable('the server has no cursor message');
      }
      throw err;
    }
  }

  /** Whether the server takes the cursor message (false once one refused it as unknown). */
  #cursorMessage = true;

  /**
   * Pulls from `cursor` to the head, `onPage` applying each page before it is acknowledged (the
   * server stays at most WINDOW pages ahead). `onPage` returns false to stop early (the cursor
   * moved under us). `SocketUnavailable` when the socket cannot serve it (then pull over HTTP).
   */
  async pull(cursor: number, limit: number, onPage: (page: PulledPage, from: number) => Promise<boolean>): Promise<void> {
    const id = this.#id('pull');
    const pages: PulledPage[] = [];
    let wake: (() => void) | null = null;
    let failed: Error | null = null;
    // Pages arrive unasked after the first: each registers the waiter for the next.
    const expect = () =>
      this.#request(id, null).then(
        (reply) => {
          if (reply.type !== 'changes') {
            failed = new SocketUnavailable(`unexpected ${reply.type}`);
            return wake?.();
          }
          const page = reply;
          pages.push(page);
          if (page.hasMore) expect();
          wake?.();
        },
        (err: Error) => {
          failed = err;
          wake?.();
        },
      );
    expect();
    if (!this.send({ type: 'pull', id, cursor, limit, window: WINDOW })) {
      this.#drop(id);
      throw new SocketUnavailable('no live socket');
    }
    for (let from = cursor; ;) {
      while (!pages.length && !failed) await new Promise<void>((resolve) => (wake = resolve));
      const page = pages.shift();
      if (!page) {
        this.#drop(id);
        throw failed ?? new SocketUnavailable('the stream ended');
      }
      if (!(await onPage(page, from)) || !page.hasMore || page.requiresSnapshot) {
        this.#drop(id);
        return;
      }
      from = page.nextCursor;
      this.send({ type: 'ack', id, cursor: from });
    }
  }

  #id(kind: string) {
    return `${kind}-${Date.now().toString(36)}-${(++sequence).toString(36)}`;
  }

  #drop(id: string) {
    const waiter = this.#waiting.get(id);
    if (waiter) clearTimeout(waiter.timer);
    this.#waiting.delete(id);
  }

  /** Registers a waiter for the next answer to `id`, sending `message` first when given. */
  #request(id: string, message: UpstreamRequest | null): Promise<Reply> {
    if (!this.live()) return Promise.reject(new SocketUnavailable('no live socket'));
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new SocketUnavailable('no answer in time'));
      }, REPLY_TIMEOUT_MS);
      this.#waiting.set(id, { resolve, reject, timer });
      if (message && !this.send(message)) {
        this.#drop(id);
        reject(new SocketUnavailable('no live socket'));
      }
    });
  }
}
