/**
 * What the Worker hands the workspace's object (docs/architecture.md "Authorization at the
 * shard"): the caller as verified without D1, which every acting RPC takes and authorizes inside,
 * so one HTTP request is one RPC. The object answers with `Access` or a `Failure`.
 */
import type { LimitedCall } from './limiter';
import type { Permission, Role } from './workspace-records/permissions';

/** What the Worker verified about the caller, without D1: our access JWT's claims, or a federated identity. */
export type Credential =
  | { kind: 'session'; userId: string; sessionId: string; tokenVersion: number; expiresAt: number }
  | { kind: 'federated'; provider: string; issuer: string; subject: string; email: string | null; displayName: string | null; expiresAt: number }
  /** A single-use WebSocket ticket (src/sync/ws-ticket.ts): its user, and its session when it has one. */
  | { kind: 'ticket'; userId: string; sessionId: string | null; expiresAt: number };

/** A credential from an access or federated token (what `verifyCredential` yields in the Worker). */
export type TokenCredential = Exclude<Credential, { kind: 'ticket' }>;

/** A request as the object authorizes it. */
export interface ShardCaller {
  workspaceId: string;
  credential: Credential;
  permission: Permission;
}

/** A sync request: who (verified, to authorize at the object) and which rate limit it counts against. */
export type SyncCaller = ShardCaller & LimitedCall;

/**
 * A deployment admin acting on a workspace they need not belong to (storage with
 * `x-or3-admin-intent: admin`, storage GC; docs/admin.md): the Worker checked the admin flag and
 * that the workspace exists, so the object takes the user id as it is.
 */
export interface AdminCaller {
  workspaceId: string;
  admin: string;
}

/** A storage request's caller: a member, authorized at the object, or a deployment admin. */
export type StorageCaller = ShardCaller | AdminCaller;

export interface Access {
  userId: string;
  role: Role;
  /** Our session (basic auth), or null for a federated principal. */
  sessionId: string | null;
  /**
   * When the oldest fact this answer used was read from D1: an open socket may deliver what this
   * answer allows only until `checkedAt` + the cache's lifetime (sockets.ts), so a revocation
   * made behind the object's back ends everything a socket delivers within that bound.
   */
  checkedAt: number;
}
