/**
 * The write path for memberships (docs/architecture.md "Members live with their workspace"):
 * every change goes to the workspace's object, the authority, which writes it, then makes D1's
 * copy and the user's object follow (src/workspace-db/members.ts). Routes call these instead of
 * writing D1's `members` table. Where D1 must decide first (an invite's claim, a workspace's
 * creation, counted there), the route writes D1 and then has the object adopt the membership
 * (`adoptMember`); a crash in between is what the repair route reconciles.
 */
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import type { Role } from './permissions';
import { copiedWorkspacesOf, existingUsers, readWorkspaceCopy, type RosterChange } from './member-copy';
import { createWorkspace, type MemberChange } from './store';

/** Attempts for an RPC to the authority: an object restarting (a deploy) is retried once more. */
const ATTEMPTS = 2;

async function retried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= ATTEMPTS) throw err;
    }
  }
}

/** Adds a member or changes their role (admin upsert, import `member` lines, ownership transfer). */
export async function upsertMember(env: Bindings, workspaceId: string, userId: string, role: Role): Promise<MemberChange> {
  if (!(await existingUsers(env.DB, [userId])).has(userId)) return 'no_user';
  return retried(() => env.WORKSPACE.getByName(workspaceId).memberChange({ op: 'upsert', userId, role }));
}

/** A workspace made by an admin route (a fork): D1's row and owner in one batch, then the object adopts the owner. */
export async function createOwnedWorkspace(env: Bindings, ownerId: string, name: string, description: string | null): Promise<string> {
  const now = Date.now();
  const id = await createWorkspace(env.DB, ownerId, name, description, now);
  await adoptMember(env, id, ownerId, 'owner', now);
  return id;
}

/** Several changes in one call to the authority (import `member` lines): one transaction, one copy. */
export async function applyMemberChanges(env: Bindings, workspaceId: string, changes: RosterChange[]): Promise<MemberChange[]> {
  if (!changes.length) return [];
  return retried(() => env.WORKSPACE.getByName(workspaceId).memberChanges(changes));
}

/** Makes `userId` an owner when the workspace has none (an import named no owner); whether it did. */
export async function ensureOwner(env: Bindings, workspaceId: string, userId: string): Promise<boolean> {
  const { members } = await env.WORKSPACE.getByName(workspaceId).members();
  if (members.some((m) => m.role === 'owner')) return false;
  return (await upsertMember(env, workspaceId, userId, 'owner')) === 'ok';
}

/** Changes an existing member's role; the workspace keeps an owner. */
export function setMemberRole(env: Bindings, workspaceId: string, userId: string, role: Role): Promise<MemberChange> {
  return retried(() => env.WORKSPACE.getByName(workspaceId).memberChange({ op: 'set', userId, role }));
}

/** Removes a member (their sockets close, their cached role goes); the workspace keeps an owner. */
export function removeMember(env: Bindings, workspaceId: string, userId: string): Promise<MemberChange> {
  return retried(() => env.WORKSPACE.getByName(workspaceId).memberChange({ op: 'remove', userId }));
}

/**
 * A membership D1 wrote first (an accepted invite, a new workspace's owner): the authority takes
 * it unless it removed the user after `since`. Never throws: the D1 write happened and the route
 * answers as such; a lost adoption is logged and left to the repair route.
 */
export async function adoptMember(env: Bindings, workspaceId: string, userId: string, role: Role, since: number): Promise<void> {
  try {
    await retried(() => env.WORKSPACE.getByName(workspaceId).memberChange({ op: 'adopt', userId, role, since }));
  } catch (err) {
    logEvent('warn', 'member_adopt_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
  }
}

/** The membership an invite just gave a new account (registration through an invite): adopted by the workspace's object. */
export async function adoptAcceptedInvite(env: Bindings, inviteHash: string, userId: string): Promise<void> {
  const row = await env.DB.prepare('SELECT workspace_id, role, accepted_at FROM invites WHERE token_hash = ? AND accepted_by = ?')
    .bind(inviteHash, userId)
    .first<{ workspace_id: string; role: Role; accepted_at: number }>();
  if (row) await adoptMember(env, row.workspace_id, userId, row.role, row.accepted_at);
}

/** Workspaces one user repair reconciles at a time (each is one call to that workspace's object). */
const REPAIR_PARALLEL = 10;

/**
 * Reconciles one user's memberships (the user repair route): every workspace D1's copy or the
 * user's own list names is asked to reconcile that user from its authority, which rewrites
 * D1's row and tells the user's object again. Returns the workspaces asked and those that failed.
 */
export async function repairUser(env: Bindings, userId: string): Promise<{ workspaces: number; failed: string[] }> {
  const [copied, listed] = await Promise.all([copiedWorkspacesOf(env.DB, userId), env.USER_DB.getByName(userId).listedWorkspaceIds()]);
  const ids = [...new Set([...copied, ...listed])];
  const failed: string[] = [];
  for (let i = 0; i < ids.length; i += REPAIR_PARALLEL) {
    await Promise.all(
      ids.slice(i, i + REPAIR_PARALLEL).map((id) =>
        env.WORKSPACE.getByName(id)
          .repairMembers(userId)
          .catch(() => void failed.push(id)),
      ),
    );
  }
  return { workspaces: ids.length, failed };
}

/**
 * After a write to the workspace's D1 row (rename, soft delete, restore): the object takes the
 * row as D1 now has it and tells the members' user objects. Never throws (the D1 write
 * happened); a lost message is logged and left to the repair route.
 */
export async function workspaceRowChanged(env: Bindings, workspaceId: string): Promise<void> {
  try {
    const { info } = await readWorkspaceCopy(env.DB, workspaceId);
    await retried(() => env.WORKSPACE.getByName(workspaceId).workspaceInfo(info));
  } catch (err) {
    logEvent('warn', 'workspace_info_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
  }
}
