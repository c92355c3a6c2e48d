/**
 * The sync wire contract's shared pieces (docs/sync.md), defined once for both ends: the Worker
 * (src/) and the SDK (client/src/) import this file, so the table list, the last-write-wins
 * order, and the change and snapshot shapes cannot drift apart (the socket's messages: socket.ts). Pure
 * TypeScript with no imports: it runs in workerd and in browsers alike, and the SDK's package
 * ships it (client/tsconfig.json compiles it beside the SDK).
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

/** A device id a client may name on the socket URL (`deviceId=`): echoed to every member, so plain characters only. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The capabilities the SDK declares on pull, snapshot and push (docs/api.md "Capabilities"): it
 * keeps every field of every row as the server sends it, so generic files and workspace items
 * are safe with it.
 */
export const SYNC_CAPABILITIES = { fileKindCapability: 'v1', workspaceItemCapability: 'v1' } as const;
