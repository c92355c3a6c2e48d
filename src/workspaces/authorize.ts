/**
 * The one authorization check every workspace-scoped route uses (workspaces, sync, storage):
 * resolve the caller's membership and role server-side, per request, and require a permission.
 * Claims in tokens are never trusted for roles; a removed member loses access at once.
 *
 * A workspace the caller does not belong to answers 403 whether or not it exists, so ids of
 * other tenants cannot be probed.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { forbidden } from '../errors';
import { logEvent } from '../http/logger';
import { audit } from '../audit/emit';
import { prefetchedMembership, requireUser, type Principal } from '../auth/authenticate';
import { can, type Permission } from './permissions';
import { membershipOf, type Membership } from './store';

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
