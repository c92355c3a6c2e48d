/**
 * Presence for one workspace (docs/client.md "Presence"; the wire in docs/sync.md): this
 * device's state, published over the realtime socket, and the roster of every device online.
 *
 *   ws.presence.set({ threadId });                 // what this device shows
 *   input.oninput = () => ws.presence.typing();     // `typing: true`, cleared after 3 s without input
 *   ws.on('presence', ({ roster }) => draw(roster)); // everyone online, this device included
 *
 * The state is kept here and sent again after every reconnect, so it survives dropped sockets;
 * sends are throttled to the server's rate (latest wins), and nothing is sent while the socket is
 * down. The roster is what the server last said; it is empty while the socket is down.
 */
import type { Payload } from '../../protocol/sync.js';
import { PRESENCE, type PresenceMessage, type Upstream } from '../../protocol/socket.js';
import { Or3Error } from './http.js';

/** A device's presence state: a small JSON object (≤ 1 KB as JSON), e.g. `{ threadId, typing }`. */
export type PresenceState = Payload;

/** One device in the roster. */
export interface PresencePeer {
  userId: string;
  deviceId: string;
  state: PresenceState;
  /** This device (the same user and device id as the workspace's). */
  self: boolean;
}

export interface PresenceOptions {
  /** `typing()` clears itself after this long without another call (ms). */
  typingTimeoutMs: number;
}

export const DEFAULT_PRESENCE_OPTIONS: PresenceOptions = { typingTimeoutMs: 3_000 };

/** The server's rate, as an interval between sends. */
const MIN_INTERVAL_MS = 1000 / PRESENCE.perSecond;
const encoder = new TextEncoder();
const keyOf = (userId: string, deviceId: string) => `${userId}\u0000${deviceId}`;

/** The engine behind `ws.presence`: the wire side (realtime.ts calls in) and the app side. */
export class PresenceRoom {
  #desired: PresenceState | null = null;
  /** The JSON last sent on this connection; undefined: nothing sent yet on it. */
  #sent: string | undefined;
  #sentAt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #typingTimer: ReturnType<typeof setTimeout> | null = null;
  #roster = new Map<string, PresencePeer>();
  #live = false;
  #closed = false;

  constructor(
    private readonly userId: string,
    private readonly deviceId: string,
    private readonly send: (message: Upstream) => boolean,
    private readonly changed: (roster: PresencePeer[]) => void,
    private readonly options: PresenceOptions,
  ) {}

  get state(): PresenceState | null {
    return this.#desired;
  }

  set(state: PresenceState | null) {
    if (state !== null) {
      const json = JSON.stringify(state);
      if (typeof state !== 'object' || Array.isArray(state) || json === undefined)
        throw new Or3Error(400, 'invalid_presence', 'A presence state is a JSON object, or null');
      if (encoder.encode(json).byteLength > PRESENCE.maxStateBytes)
        throw new Or3Error(413, 'presence_too_large', `A presence state is at most ${PRESENCE.maxStateBytes} bytes of JSON`);
      state = JSON.parse(json) as PresenceState; // a copy: later changes to the app's object are not sent by accident
    }
    this.#desired = state;
    this.#schedule();
  }

  typing(active = true) {
    if (this.#typingTimer) clearTimeout(this.#typingTimer);
    this.#typingTimer = null;
    if (active) {
      if (this.#desired?.typing !== true) this.set({ ...this.#desired, typing: true });
      this.#typingTimer = setTimeout(() => this.typing(false), this.options.typingTimeoutMs);
    } else if (this.#desired?.typing !== undefined) {
      const { typing: _typing, ...rest } = this.#desired;
      this.set(rest);
    }
  }

  roster(): PresencePeer[] {
    return [...this.#roster.values()].sort((a, b) => a.userId.localeCompare(b.userId) || a.deviceId.localeCompare(b.deviceId));
  }

  // -- the socket's side

  /** `hello`: the server accepted the socket; publish this device's state on it. */
  connected() {
    this.#live = true;
    this.#sent = undefined;
    this.#schedule();
  }

  /** The socket is down: nobody's presence is known any more. */
  disconnected() {
    this.#live = false;
    this.#sent = undefined;
    if (this.#roster.size) {
      this.#roster.clear();
      this.changed([]);
    }
  }

  receive(msg: PresenceMessage) {
    if (msg.type === 'presence-roster') {
      this.#roster.clear();
      for (const e of msg.entries) this.#roster.set(keyOf(e.userId, e.deviceId), this.#peer(e.userId, e.deviceId, e.state));
    } else if (msg.type === 'presence') {
      this.#roster.set(keyOf(msg.userId, msg.deviceId), this.#peer(msg.userId, msg.deviceId, msg.state));
    } else {
      this.#roster.delete(keyOf(msg.userId, msg.deviceId));
      // This device was dropped (silent for too long, as a throttled background tab may be): show up again.
      if (msg.userId === this.userId && msg.deviceId === this.deviceId && this.#desired !== null) {
        this.#sent = undefined;
        this.#schedule();
      }
    }
    this.changed(this.roster());
  }

  close() {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#typingTimer) clearTimeout(this.#typingTimer);
    this.#timer = this.#typingTimer = null;
  }

  #peer(userId: string, deviceId: string, state: PresenceState): PresencePeer {
    return { userId, deviceId, state, self: userId === this.userId && deviceId === this.deviceId };
  }

  /** Sends the desired state once the rate allows (the latest wins), if it differs from what the server has. */
  #schedule() {
    if (this.#closed || !this.#live || this.#timer) return;
    const wait = this.#sentAt + MIN_INTERVAL_MS - Date.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => ((this.#timer = null), this.#flush()), wait);
      return;
    }
    this.#flush();
  }

  #flush() {
    if (this.#closed || !this.#live) return;
    const json = JSON.stringify(this.#desired);
    // Nothing was sent on this connection and there is nothing to show: the server has nothing either.
    if (json === this.#sent || (this.#sent === undefined && this.#desired === null)) return;
    if (!this.send({ type: 'presence', state: this.#desired })) return;
    this.#sent = json;
    this.#sentAt = Date.now();
  }
}

/**
 * `ws.presence`: this device's presence state and the roster of the workspace. Changes of the
 * roster arrive as the workspace's `presence` event.
 */
export class Or3Presence {
  readonly #room: PresenceRoom;

  /** @internal The workspace creates it. */
  constructor(room: PresenceRoom) {
    this.#room = room;
  }

  /** This device's state as last set (null: not in the roster). */
  get state(): PresenceState | null {
    return this.#room.state;
  }

  /**
   * Replaces this device's state (a JSON object of at most 1 KB, else it throws), or `null` to
   * leave the roster. Sent at most 10 times a second (the latest wins) and again after every
   * reconnect.
   */
  set(state: PresenceState | null): void {
    this.#room.set(state);
  }

  /**
   * Marks this device as typing (`typing: true` in its state). Call it on every keystroke: it
   * clears itself `typingTimeoutMs` (3 s) after the last call; `typing(false)` clears it at once
   * (e.g. when the message is sent).
   */
  typing(active = true): void {
    this.#room.typing(active);
  }

  /** Every device online in the workspace (this one included, marked `self`), by user and device. */
  roster(): PresencePeer[] {
    return this.#room.roster();
  }
}
