/**
 * The workspace socket's messages (docs/api.md "Socket messages"), typed once for both ends: what
 * a client sends (`Upstream`), what the server sends (`Downstream`), and the one failure shape
 * (`SocketError`). The server writes each downstream message with one builder
 * (src/workspace-db/downstream.ts); the SDK reads them with these types (client/src/realtime.ts,
 * client/src/socket-sync.ts). Besides JSON messages the socket carries the text `ping`, answered
 * `pong`. Pure TypeScript with no runtime imports.
 */
import type { Payload, SyncChange, TableName } from './sync.js';

/** A refused socket request: the HTTP status and machine code the same request over HTTP would get. */
export interface SocketError {
  status: number;
  code: string;
  message: string;
  /** Seconds to wait before trying again (429, 503). */
  retryAfter?: number;
}

/** Sync over the socket's bounds (docs/sync.md "Sync over the socket"). */
export const SOCKET_SYNC_LIMITS = {
  /** Ops in one `push` message (HTTP: 100). */
  maxOps: 1_000,
  /** Payload bytes of one `push` message (HTTP: 2 MiB). */
  maxBatchBytes: 16 * 1024 * 1024,
  /** Pages a `pull` stream sends ahead of the client's `ack` unless it asks otherwise. */
  window: 4,
  maxWindow: 16,
  /** Characters of a request's `id`. */
  idLength: 64,
  /**
   * Bytes of pull pages a socket may have unacknowledged, across its streams (a new pull replaces
   * the old stream but not what it sent): streaming pauses at it, and a pull that arrives while
   * the socket owes that much closes it (1008).
   */
  maxUnackedBytes: 16 * 1024 * 1024,
} as const;

/** A push's answer for one op (docs/api.md "Sync"). */
export interface PushOpResult {
  opId: string;
  success: boolean;
  serverVersion?: number;
  error?: string;
  errorCode?: string;
  applied?: boolean;
}

/**
 * Presence on the workspace socket (docs/sync.md "Presence"). The server enforces these; the SDK
 * stays inside them (its heartbeat, debounce and size check are derived from them).
 */
export const PRESENCE = {
  /** UTF-8 bytes of a state's JSON. */
  maxStateBytes: 1024,
  /** Updates one socket may publish per second; more are coalesced (the latest wins). */
  perSecond: 10,
  /** A socket with no message and no `ping` for this long leaves the roster. */
  silenceMs: 30_000,
} as const;

/** One device in the roster: its user, its id, and the state it last published. */
export interface PresenceEntry {
  userId: string;
  deviceId: string;
  state: Payload;
}

// ---------------------------------------------------------------------------------------------
// Client → server

export type Upstream =
  | { type: 'presence'; state: Payload | null }
  /** `echo: false`: the pusher's own poke carries none of its changes (its push-result answers for them). */
  | { type: 'push'; id: string; ops: unknown[]; echo?: false }
  | { type: 'pull'; id: string; cursor: number; limit?: number; tables?: TableName[]; window?: number }
  | { type: 'ack'; id: string; cursor: number }
  /** What this device has applied, for the server's retention (the HTTP `update-cursor`). */
  | { type: 'cursor'; id: string; deviceId: string; version: number };

/** The upstream messages that carry an `id` and get an answer with it. */
export type UpstreamRequest = Extract<Upstream, { id: string }>;

// ---------------------------------------------------------------------------------------------
// Server → client

/** One page of a `pull` stream: what an HTTP pull from the stream's cursor would return. */
export interface ChangesPage {
  changes: SyncChange[];
  nextCursor: number;
  hasMore: boolean;
  oldestRetainedVersion: number;
  requiresSnapshot: boolean;
}

export type Downstream =
  /** Sent once the socket's membership is confirmed. */
  | { type: 'hello'; serverVersion: number }
  /** After a commit; a small commit's changes ride along (what a pull from `fromVersion` returns). */
  | { type: 'poke'; serverVersion: number; fromVersion?: number; changes?: SyncChange[] }
  | ({ type: 'presence' } & PresenceEntry)
  | { type: 'presence-leave'; userId: string; deviceId: string }
  /** The whole roster, replacing what the client knew: after `hello`, and after a re-confirmed membership. */
  | { type: 'presence-roster'; entries: PresenceEntry[] }
  | { type: 'push-result'; id: string; results: PushOpResult[]; serverVersion: number }
  | ({ type: 'changes'; id: string } & ChangesPage)
  | { type: 'cursor-result'; id: string }
  /**
   * A refused request (`id`: the request's, null when it could not be read; absent for presence).
   * `error` is the `SocketError`'s `code` (the wire name predates `status`, kept for clients
   * that read it).
   */
  | { type: 'error'; id?: string | null; status: number; error: string; message: string; retryAfter?: number };

/** What the server sends about presence (besides `hello` and `poke`). */
export type PresenceMessage = Extract<Downstream, { type: 'presence' | 'presence-leave' | 'presence-roster' }>;
/** The answers to an upstream request, matched by `id`. */
export type Reply = Extract<Downstream, { type: 'push-result' | 'changes' | 'cursor-result' | 'error' }>;

/** The `SocketError` an `error` message carries. */
export function socketError(message: Extract<Downstream, { type: 'error' }>): SocketError {
  return {
    status: message.status,
    code: message.error,
    message: message.message,
    ...(message.retryAfter !== undefined ? { retryAfter: message.retryAfter } : {}),
  };
}
