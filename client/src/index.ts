/**
 * or3-edge client: local-first sync, attachments and presence over the OR3 HTTP contract and the
 * server's WebSocket (sync and presence on one socket when it is open; HTTP otherwise).
 *
 *   const client = createOr3Client({ baseUrl: 'https://edge.example.com' });
 *   await client.basicAuth.signIn(email, password);
 *   const ws = await client.openWorkspace();            // the session's active workspace
 *   await ws.db.messages.put({ id, thread_id, ... });   // written locally, synced in the background
 *   ws.on('status', (status) => ...);                   // { phase, realtime, pending, failed, ... }
 *   ws.presence.set({ threadId });                      // who is here, and where
 *
 * This module is the whole public surface (the package exports nothing else); see
 * docs/client.md for the reference.
 */
import { Or3Client, type Or3ClientOptions } from './client.js';

export { ExternalTokenAuth, memoryTokenStore, type TokenStore, type Tokens } from './auth.js';
export type { BasicAuthApi, ClientEvents, Or3Client, Or3ClientOptions, SessionContext, WorkspaceMember, WorkspaceSummary } from './client.js';
export type { SyncChange, TableName } from '../../protocol/sync.js';
export type { PresenceEntry } from '../../protocol/socket.js';
export { Or3Error, type AuthAdapter, type FetchLike } from './http.js';
export type { SyncOptions } from './loop.js';
export type { Or3Database } from './db.js';
export type { Or3Presence, PresenceOptions, PresencePeer, PresenceState } from './presence.js';
export type { FailedOp } from './push.js';
export type { WebSocketLike } from './realtime.js';
export type { RealtimeState, SyncPhase, SyncStatus } from './status.js';
export type { FileMetaRow, Flag, KvRow, MessageRow, NotificationRow, Or3Tables, PostRow, ProjectRow, ThreadRow } from './tables.js';
export type { TransferOptions, TransferProgress, UploadInput } from './transfers.js';
export type { Or3Workspace, WorkspaceEvents } from './workspace.js';

/** A client for one server (`baseUrl`, default: this page's origin). */
export function createOr3Client(options: Or3ClientOptions = {}): Or3Client {
  return new Or3Client(options);
}
