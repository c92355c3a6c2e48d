/**
 * The sync wire contract's shared pieces (docs/sync.md), defined once for both ends: the Worker
 * imports this file (src/sync/protocol.ts, src/workspace-db/) and the SDK builds on it, so the
 * table list, the last-write-wins order, the change and snapshot shapes and the presence limits
 * cannot drift apart. Pure TypeScript with no imports: it runs in workerd and in browsers alike.
 */

/** The synced tables, in the order the server lists them in error messages. */
export const TABLES = ['threads', 'messages', 'projects', 'posts', 'kv', 'file_meta', 'notifications'] as const;
export type TableName = (typeof TABLES)[number];

/** A row payload as it travels: an open snake_case record (the server validates required fields). */
export type Payload = { [column: string]: unknown };

/** The revision last-write-wins compares: `clock`, then `hlc`, then `opId`. */
export interface Revision {
  clock: number;
  hlc: string;
  opId: string;
}

/** Last-write-wins order: (clock, hlc, opId), hlc and opId compared as plain strings. */
export function compareRevisions(a: Revision, b: Revision): number {
  if (a.clock !== b.clock) return a.clock < b.clock ? -1 : 1;
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  if (a.opId !== b.opId) return a.opId < b.opId ? -1 : 1;
  return 0;
}

/** A change as pull pages and pokes carry it (docs/sync.md "Pull"). `P`: the payload type. */
export interface SyncChange<P = Payload> {
  serverVersion: number;
  tableName: string;
  pk: string;
  op: 'put' | 'delete';
  payload?: P;
  stamp: { deviceId: string; opId: string; hlc: string; clock: number };
}

/** One entity of a snapshot page (docs/sync.md "Snapshot"); `serverDeletedAt` in epoch seconds. */
export type SnapshotItem<P = Payload> =
  | { kind: 'row'; tableName: string; pk: string; payload: P; revision: Revision }
  | { kind: 'tombstone'; tableName: string; pk: string; revision: Revision; serverDeletedAt: number };

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

/** A device id a client may name on the socket URL (`deviceId=`): echoed to every member, so plain characters only. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** One device in the roster: its user, its id, and the state it last published. */
export interface PresenceEntry {
  userId: string;
  deviceId: string;
  state: Payload;
}

/** What the server sends about presence (besides `hello` and `poke`). */
export type PresenceMessage =
  | ({ type: 'presence' } & PresenceEntry)
  | { type: 'presence-leave'; userId: string; deviceId: string }
  /** The whole roster, replacing what the client knew: after `hello`, and after a re-confirmed membership. */
  | { type: 'presence-roster'; entries: PresenceEntry[] };

/**
 * The capabilities the SDK declares on pull, snapshot and push (docs/api.md "Capabilities"): it
 * keeps every field of every row as the server sends it, so generic files and workspace items
 * are safe with it.
 */
export const SYNC_CAPABILITIES = { fileKindCapability: 'v1', workspaceItemCapability: 'v1' } as const;
