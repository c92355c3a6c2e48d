/**
 * Presence on the workspace socket (docs/sync.md "Presence"): who is here, with a small JSON state
 * each device publishes (e.g. `{ threadId, typing: true }`), fanned out to every socket of the
 * workspace. Ephemeral by design: a state lives in its socket's attachment, so it survives the
 * object's hibernation with the socket and ends with it. It is never written to SQLite, D1, the
 * archive or a log line.
 *
 * - Identity is (userId, deviceId): the socket's authenticated user, and the device id the client
 *   named on the socket URL (validated by the Worker) or one made up for the socket. Several
 *   sockets of one device (tabs) are one roster entry, showing the newest state among them.
 * - Silence: clients send `ping` every 10 s, which the runtime's auto-response answers without
 *   waking the object, so the object cannot see it happen; it reads it afterwards with
 *   `getWebSocketAutoResponseTimestamp`. While anyone is in the roster, the alarm (alarm.ts) runs
 *   a sweep at the earliest moment someone can have been silent for `PRESENCE.silenceMs`; a silent
 *   socket leaves the roster. Its socket stays open: a client still there sees its own leave and
 *   publishes again. The object sleeps between sweeps, so silence costs one wake per ~30 s per
 *   workspace, not one per heartbeat.
 * - Rate: `PRESENCE.perSecond` updates per socket per second (a fixed window kept in the
 *   attachment). An update over it is held, a later one replacing it, and published when the
 *   window ends (a timer of under a second; or the next sweep, if the object was evicted).
 * - Access: any confirmed member may publish, a viewer too. A socket whose membership is not yet
 *   confirmed (before `hello`) may not, and hears nothing until its confirmation, which brings
 *   the whole roster; one whose confirmation is stale hears nothing while the object checks
 *   again (as pokes' changes). A removed member's sockets are closed (4003) and leave at once.
 */
import { PRESENCE, type SocketError } from '../../protocol/socket';
import * as downstream from './downstream';

/** The refusals (the socket stays open), with the status the same refusal over HTTP would carry. */
const TOO_LARGE: SocketError = { status: 413, code: 'presence_too_large', message: `A presence state is at most ${PRESENCE.maxStateBytes} bytes of JSON` };
const NOT_READY: SocketError = { status: 409, code: 'presence_not_ready', message: 'Wait for hello before publishing presence' };
const INVALID: SocketError = { status: 400, code: 'invalid_presence', message: 'A presence state is a JSON object, or null to leave the roster' };

/** Largest message parsed at all: a presence message is its state (≤ 1 KB as UTF-8) plus a short envelope. */
const MAX_MESSAGE_CHARS = 8 * 1024;
const WINDOW_MS = 1000;
/** A sweep runs this long after the earliest moment someone could be silent, so one sweep catches neighbours too. */
const SWEEP_SLACK_MS = 1000;

/** The part of a socket's attachment presence reads and writes (sockets.ts holds the rest). */
export interface PresenceAttachment {
  userId: string;
  /** When D1 last confirmed the membership (ms); 0: not yet. */
  verifiedAt: number;
  /** Absent on sockets accepted before presence existed: one is made up on first use. */
  deviceId?: string;
  /** The last message the object handled from this socket (ms); auto-answered pings are read from the runtime. */
  seenAt?: number;
  /** The published state as JSON text; absent or null: not in the roster. */
  state?: string | null;
  stateAt?: number;
  /** The rate window: its start (ms) and the updates published in it. */
  window?: [number, number];
  /** An update over the rate, published when the window ends. */
  held?: { state: string | null };
}

/** The fields a newly accepted socket starts with; `deviceId` from the Worker's `x-or3-device-id`. */
export function presenceFields(deviceId: string | null, now = Date.now()): Pick<PresenceAttachment, 'deviceId' | 'seenAt'> {
  return { deviceId: deviceId ?? `socket-${crypto.randomUUID()}`, seenAt: now };
}

const read = (ws: WebSocket) => ws.deserializeAttachment() as PresenceAttachment | null;
const utf8Bytes = (text: string) => new TextEncoder().encode(text).byteLength;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Entry {
  userId: string;
  deviceId: string;
  state: string;
  at: number;
}

export class Presence {
  /** Timers publishing held updates (memory only: an evicted object leaves them to the sweep). */
  readonly #timers = new Map<WebSocket, ReturnType<typeof setTimeout>>();
  /** When the alarm is known to be armed for a sweep (memory only: after a wake, asked again). */
  #sweepAt: number | null = null;
  /** Inside the alarm's sweep, which arms the next one itself. */
  #sweeping = false;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly membership: {
      /** Whether the socket's confirmation is recent enough for it to hear presence. */
      fresh(attachment: PresenceAttachment, now: number): boolean;
      /** Checks the membership again; the roster follows a confirmation (sockets.ts `verify`). */
      reverify(ws: WebSocket): void;
      /** The same check, awaited: true when the socket is confirmed now. */
      confirm(ws: WebSocket): Promise<boolean>;
      /** Makes sure the alarm fires by `at` (alarm.ts `armSweep`). */
      armSweep(at: number): Promise<void>;
      /** The roster's size after a device published a state (the metrics' presence peak). */
      rosterSize?: (devices: number) => void;
    },
  ) {}

  /** A message from a client. Only `{ type: 'presence', state }` is understood; anything else is ignored. */
  message(ws: WebSocket, data: string | ArrayBuffer) {
    if (typeof data !== 'string') return;
    if (data.length > MAX_MESSAGE_CHARS) return this.#refuse(ws, TOO_LARGE);
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!isObject(msg) || msg.type !== 'presence') return;
    const attachment = read(ws);
    if (!attachment?.verifiedAt) return this.#refuse(ws, NOT_READY);
    if (msg.state !== null && !isObject(msg.state)) return this.#refuse(ws, INVALID);
    const state = msg.state === null ? null : JSON.stringify(msg.state);
    if (state !== null && utf8Bytes(state) > PRESENCE.maxStateBytes) return this.#refuse(ws, TOO_LARGE);
    const now = Date.now();
    // Published only by a socket confirmed within its bound: a user whose access ended behind
    // the object's back is checked first (and closed), never heard (docs/sync.md "Presence").
    if (this.membership.fresh(attachment, now)) return this.#publish(ws, attachment, state, now);
    return this.membership.confirm(ws).then((ok) => {
      const current = ok ? read(ws) : null;
      if (current) this.#publish(ws, current, state, Date.now());
    });
  }

  /** Sends the whole roster to one socket (after `hello`, and after a stale membership is confirmed again). */
  roster(ws: WebSocket) {
    try {
      ws.send(downstream.presenceRoster([...this.#entries().values()]));
    } catch {
      // Closing already.
    }
  }

  /** Sockets that closed (or were closed): their devices leave, unless another socket of the device remains. */
  left(sockets: WebSocket[]) {
    this.#depart(sockets, new Set(sockets));
  }

  /**
   * The alarm's sweep: silent sockets leave the roster, held updates whose window ended are
   * published. Returns when the next sweep is due, or null when the roster is empty.
   */
  sweep(now = Date.now()): number | null {
    let next: number | null = null;
    const silent: WebSocket[] = [];
    const held: WebSocket[] = [];
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = read(ws);
      if (!attachment) continue;
      if (attachment.held) held.push(ws);
      if (!attachment.state) continue;
      const pinged = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      const seen = Math.max(attachment.seenAt ?? 0, pinged);
      if (now - seen >= PRESENCE.silenceMs) silent.push(ws);
      else next = Math.min(next ?? Infinity, seen + PRESENCE.silenceMs + SWEEP_SLACK_MS);
    }
    this.#sweeping = true;
    try {
      this.#sweepAt = next;
      // The silent stay connected and hear their own leave: a client that is still there publishes again.
      this.#depart(silent, new Set());
      for (const ws of held) this.#flush(ws);
    } finally {
      this.#sweeping = false;
    }
    return this.#sweepAt;
  }

  #refuse(ws: WebSocket, refusal: SocketError) {
    try {
      ws.send(downstream.error(undefined, refusal));
    } catch {
      // Closing already.
    }
  }

  #publish(ws: WebSocket, attachment: PresenceAttachment, state: string | null, now: number) {
    const start = now - (now % WINDOW_MS);
    const used = attachment.window?.[0] === start ? attachment.window[1] : 0;
    if (used >= PRESENCE.perSecond) {
      ws.serializeAttachment({ ...attachment, seenAt: now, held: { state } } satisfies PresenceAttachment);
      if (!this.#timers.has(ws))
        this.#timers.set(
          ws,
          setTimeout(() => (this.#timers.delete(ws), this.#flush(ws)), start + WINDOW_MS - now),
        );
      return;
    }
    const deviceId = attachment.deviceId ?? presenceFields(null).deviceId!;
    const before = this.#entries().get(key(attachment.userId, deviceId))?.state ?? null;
    const { held: _held, ...rest } = attachment;
    ws.serializeAttachment({ ...rest, deviceId, seenAt: now, state, stateAt: now, window: [start, used + 1] } satisfies PresenceAttachment);
    const after = this.#announce(attachment.userId, deviceId, new Set(), before);
    if (after !== null) this.#armSweep(now + PRESENCE.silenceMs + SWEEP_SLACK_MS);
    if (after !== null && before === null) this.membership.rosterSize?.(this.#entries().size); // only a join can raise the peak
  }

  /** Publishes a held update now (its window has ended). */
  #flush(ws: WebSocket) {
    const attachment = read(ws);
    if (!attachment?.held) return;
    this.#publish(ws, attachment, attachment.held.state, Date.now());
  }

  /**
   * Takes sockets out of the roster and tells everyone what their devices show now. `skip`: sockets
   * that are closing (left out of the roster and of the fan-out).
   */
  #depart(sockets: WebSocket[], skip: Set<WebSocket>) {
    const devices = new Map<string, Entry>();
    // What each device showed: a closing socket may already be missing from getWebSockets().
    const current = this.#entries();
    for (const ws of sockets) {
      clearTimeout(this.#timers.get(ws));
      this.#timers.delete(ws);
      const attachment = read(ws);
      if (!attachment?.deviceId || !attachment.state) continue;
      const k = key(attachment.userId, attachment.deviceId);
      const mine: Entry = { userId: attachment.userId, deviceId: attachment.deviceId, state: attachment.state, at: attachment.stateAt ?? 0 };
      devices.set(
        k,
        [current.get(k), devices.get(k)].reduce<Entry>((newest, e) => (e && e.at > newest.at ? e : newest), mine),
      );
      const { held: _held, ...rest } = attachment;
      try {
        // Cleared on closing sockets too: their own close event must not announce them again.
        ws.serializeAttachment({ ...rest, state: null } satisfies PresenceAttachment);
      } catch {
        // Closed for good: nothing left to clear.
      }
    }
    for (const { userId, deviceId, state } of devices.values()) this.#announce(userId, deviceId, skip, state);
  }

  /**
   * Tells every socket what a device shows now (its newest state, or a leave), when that differs
   * from `before`. Returns the device's state now.
   */
  #announce(userId: string, deviceId: string, skip: Set<WebSocket>, before: string | null): string | null {
    const now = this.#entries(skip).get(key(userId, deviceId))?.state ?? null;
    if (now === before) return now;
    this.#fanOut(now === null ? downstream.presenceLeave(userId, deviceId) : downstream.presence(userId, deviceId, now), skip);
    return now;
  }

  #fanOut(text: string, skip: Set<WebSocket>) {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      if (skip.has(ws)) continue;
      const attachment = read(ws);
      if (!attachment?.verifiedAt) continue; // the roster follows its confirmation
      if (!this.membership.fresh(attachment, now)) {
        this.membership.reverify(ws);
        continue;
      }
      try {
        ws.send(text);
      } catch {
        // A socket closing as we send: its close event follows.
      }
    }
  }

  /** Every device in the roster with its newest state (sockets in `skip` left out). */
  #entries(skip: Set<WebSocket> = new Set()): Map<string, Entry> {
    const entries = new Map<string, Entry>();
    for (const ws of this.ctx.getWebSockets()) {
      if (skip.has(ws)) continue;
      const a = read(ws);
      if (!a?.state || !a.deviceId) continue;
      const k = key(a.userId, a.deviceId);
      const seen = entries.get(k);
      if (!seen || (a.stateAt ?? 0) >= seen.at) entries.set(k, { userId: a.userId, deviceId: a.deviceId, state: a.state, at: a.stateAt ?? 0 });
    }
    return entries;
  }

  #armSweep(at: number) {
    if (this.#sweepAt !== null && this.#sweepAt <= at) return;
    this.#sweepAt = at;
    if (this.#sweeping) return; // the alarm re-arms with #sweepAt
    this.ctx.waitUntil(this.membership.armSweep(at).catch(() => (this.#sweepAt = null)));
  }
}

const key = (userId: string, deviceId: string) => `${userId}\u0000${deviceId}`;
