/**
 * D1's copy of workspace memberships (docs/architecture.md "Members live with their workspace"):
 * the workspace's object is the authority for who belongs to it (src/workspace-db/roster.ts);
 * D1's `members` table follows it, for admin queries, search, invites' claim checks and the rare
 * routes that authorize from D1. Everything here is what the object reads once (its seed) and
 * the idempotent writes that make the copy follow, plus what the repair route compares.
 */
import type { Role } from './permissions';
import { ROLES, can } from './permissions';

/** Members one workspace's object seeds or repairs at most (far above any real workspace). */
export const MAX_MEMBERS = 10_000;

export interface WorkspaceInfo {
  name: string;
  description: string | null;
  createdAt: number;
  deleted: boolean;
}

/** A change to the members, as the write paths ask for it. */
export type RosterChange =
  /** An existing member's new role. */
  | { op: 'set'; userId: string; role: Role }
  /** Adds, or changes the role (admin routes, import `member` lines, an ownership transfer). */
  | { op: 'upsert'; userId: string; role: Role; /** When the membership began (an import keeps its source's); now by default. */ createdAt?: number }
  | { op: 'remove'; userId: string }
  /**
   * A membership D1 wrote first, where D1 must decide (an invite's claim, a workspace's
   * creation): taken unless the user was removed here after `since`; a member keeps their role.
   */
  | { op: 'adopt'; userId: string; role: Role; since: number };

export interface MemberCopyRow {
  userId: string;
  role: Role;
  createdAt: number;
  updatedAt: number;
}

/** A workspace's row and its members in D1, in one batch: an object's seed, and what the repair route compares. */
export async function readWorkspaceCopy(db: D1Database, workspaceId: string): Promise<{ info: WorkspaceInfo | null; members: MemberCopyRow[] }> {
  const [workspace, members] = await db.batch([
    db.prepare('SELECT name, description, created_at, deleted_at FROM workspaces WHERE id = ?').bind(workspaceId),
    db.prepare('SELECT user_id, role, created_at, updated_at FROM members WHERE workspace_id = ? LIMIT ?').bind(workspaceId, MAX_MEMBERS),
  ]);
  const w = workspace?.results[0] as { name: string; description: string | null; created_at: number; deleted_at: number | null } | undefined;
  return {
    info: w ? { name: w.name, description: w.description, createdAt: w.created_at, deleted: w.deleted_at !== null } : null,
    members: ((members?.results ?? []) as { user_id: string; role: Role; created_at: number; updated_at: number }[]).map((r) => ({
      userId: r.user_id,
      role: r.role,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    })),
  };
}

/** The roles allowed to manage users: only their invites may admit anyone (store.ts `inviteClaimable`). */
const MANAGER_ROLES = ROLES.filter((r) => can(r, 'users.manage'))
  .map((r) => `'${r}'`)
  .join(', ');

/**
 * Makes D1's copy of these members what the authority says (role, or null: not a member), in
 * one batch. Idempotent: writing the same state twice changes nothing. A member who can no
 * longer manage users loses their pending invites in the same batch (as the authority's change
 * implies: an invite admits only while its creator may manage users).
 */
export async function writeMemberCopies(db: D1Database, workspaceId: string, rows: { userId: string; role: Role | null; createdAt: number }[], now: number) {
  if (!rows.length) return;
  const statements = rows.flatMap((r) => [
    r.role
      ? db
          .prepare(
            `INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) SELECT ?1, ?2, ?3, ?4, ?5
              WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2) AND EXISTS (SELECT 1 FROM workspaces WHERE id = ?1)
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at WHERE members.role != excluded.role`,
          )
          .bind(workspaceId, r.userId, r.role, r.createdAt, now)
      : db.prepare('DELETE FROM members WHERE workspace_id = ? AND user_id = ?').bind(workspaceId, r.userId),
    db
      .prepare(
        `UPDATE invites SET expires_at = ?3
          WHERE workspace_id = ?1 AND created_by = ?2 AND accepted_at IS NULL AND expires_at > ?3
            AND NOT EXISTS (SELECT 1 FROM members WHERE workspace_id = ?1 AND user_id = ?2 AND role IN (${MANAGER_ROLES}))`,
      )
      .bind(workspaceId, r.userId, now),
  ]);
  await db.batch(statements);
}

/** Which of these users exist in D1 (an authority write for a user that does not exist is refused). */
export async function existingUsers(db: D1Database, userIds: string[]): Promise<Set<string>> {
  if (!userIds.length) return new Set();
  const { results } = await db.prepare('SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?))').bind(JSON.stringify(userIds)).all<{ id: string }>();
  return new Set(results.map((r) => r.id));
}

/** The workspaces D1's copy lists for a user (the user repair route's starting point, with the user object's own list). */
export async function copiedWorkspacesOf(db: D1Database, userId: string): Promise<string[]> {
  const { results } = await db.prepare('SELECT workspace_id FROM members WHERE user_id = ? LIMIT ?').bind(userId, MAX_MEMBERS).all<{ workspace_id: string }>();
  return results.map((r) => r.workspace_id);
}
