/**
 * The authorization checks of workspace-scoped routes: resolve the caller's membership and role
 * server-side, per request, and require a permission. Claims in tokens are never trusted for
 * roles; a removed member loses access on the very next request.
 *
 * Two ways, one rule (`can`):
 * - at the shard (`shardCaller`, then one RPC that takes the caller and `shardAnswer`; the sync and storage routes): the Worker
 *   verifies the credential without D1 and the workspace's object decides from the facts it
 *   caches (src/workspace-db/access.ts), so the hot path makes no central query;
 * - from D1 (`authorizeWorkspace`; workspace management, export): one read per request.
 *
 * A workspace the caller does not belong to answers 403 whether or not it exists, so ids of
 * other tenants cannot be probed.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { logEvent } from '../http/logger';
import { audit } from '../audit/emit';
import { prefetchedMembership, requireUser, verifyCredential, type Principal } from '../auth/authenticate';
import { forbidden, fromFailure, unauthorized, type Failure } from '../errors';
import type { Access, ShardCaller, StorageCaller } from '../workspace-contract';
import { can, type Permission } from '../workspace-records/permissions';
import { membershipOf, type Membership } from '../workspace-records/store';

export interface Authorized {
  principal: Principal;
  membership: Membership;
}

/**
 * Denials persisted per isolate: the same (user, workspace, permission) once a minute, so one
 * user hammering a workspace cannot flood the single audit object. Every denial still gets its
 * log line.
 */
const recentDenials = new Map<string, number>();
const DENIAL_AUDIT_INTERVAL_MS = 60_000;

function shouldAuditDenial(key: string, now: number): boolean {
  const last = recentDenials.get(key);
  if (last !== undefined && now - last < DENIAL_AUDIT_INTERVAL_MS) return false;
  if (recentDenials.size >= 10_000) recentDenials.clear(); // bounded memory
  recentDenials.set(key, now);
  return true;
}

/** A `permission_denied` warning for alerts, and the same denial in the audit log. */
function denied(c: Context<AppEnv>, userId: string, workspaceId: string, permission: Permission, reason: string) {
  logEvent('warn', 'permission_denied', { requestId: c.get('requestId'), userId, workspaceId, permission, reason });
  if (shouldAuditDenial(`${userId}|${workspaceId}|${permission}`, Date.now()))
    audit(c, 'workspace.permission_denied', { actorId: userId, workspaceId, permission, reason });
}

export async function authorizeWorkspace(c: Context<AppEnv>, workspaceId: string, permission: Permission): Promise<Authorized> {
  const principal = await requireUser(c, workspaceId);
  const prefetched = prefetchedMembership(c, workspaceId);
  const membership = prefetched === undefined ? await membershipOf(c.env.DB, workspaceId, principal.userId) : prefetched;
  if (!membership) {
    denied(c, principal.userId, workspaceId, permission, 'not_member');
    throw forbidden('You are not a member of this workspace', 'not_member');
  }
  if (!can(membership.role, permission)) {
    denied(c, principal.userId, workspaceId, permission, membership.role);
    throw forbidden(`Your role (${membership.role}) does not allow ${permission}`, 'insufficient_role');
  }
  return { principal, membership };
}

/** The request as the workspace's object authorizes it: the verified credential and the permission it needs; 401 without one. */
export async function shardCaller(c: Context<AppEnv>, workspaceId: string, permission: Permission): Promise<ShardCaller> {
  const credential = await verifyCredential(c);
  if (!credential) throw unauthorized();
  return { workspaceId, credential, permission };
}

/** Turns an object's refusal into the HTTP error, logging and auditing denials as `authorizeWorkspace` does. */
export function shardFailure(c: Context<AppEnv>, caller: ShardCaller, failure: Failure, userId?: string): never {
  if (failure.status === 403 && (failure.code === 'not_member' || failure.code === 'insufficient_role')) {
    const { credential } = caller;
    const who = userId ?? (credential.kind === 'federated' ? `${credential.provider}:${credential.subject}` : credential.userId);
    denied(c, who, caller.workspaceId, caller.permission, failure.code);
  }
  throw fromFailure(failure);
}

/**
 * An acting RPC's answer (the object authorized `caller` inside it), or its refusal as the HTTP
 * error: denials are logged and audited as `authorizeWorkspace` does; a deployment admin's
 * refusals are just thrown.
 */
export function shardAnswer<R extends { ok: true } | Failure>(c: Context<AppEnv>, caller: StorageCaller, reply: R): Exclude<R, Failure> {
  if (!reply.ok) {
    if ('admin' in caller) throw fromFailure(reply as Failure);
    shardFailure(c, caller, reply as Failure);
  }
  return reply as Exclude<R, Failure>;
}

/**
 * Authorization at the shard alone, one RPC: for the WebSocket ticket (which the object's socket
 * then checks again) and multipart abort, which act on nothing but R2.
 */
export async function authorizeAtShard(c: Context<AppEnv>, workspaceId: string, permission: Permission): Promise<Access & { caller: ShardCaller }> {
  const caller = await shardCaller(c, workspaceId, permission);
  const access = await c.env.WORKSPACE.getByName(workspaceId).authorize(caller);
  if (!access.ok) shardFailure(c, caller, access);
  return { userId: access.userId, role: access.role, sessionId: access.sessionId, checkedAt: access.checkedAt, caller };
}
