/**
 * D1 access for workspaces, members, invites and the per-user active workspace.
 *
 * Invariants kept by single conditional statements (D1 has no interactive transactions):
 * a workspace always keeps at least one owner (demote/remove check the owner count in the same
 * statement); default-workspace provisioning happens at most once per user because its batch
 * inserts only while the user has no live membership, and D1 runs batches one at a time; an
 * invite admits someone only while its creator may still manage users (checked in the statement
 * that claims it), and a member who loses that right loses their pending invites in the same
 * batch that removes or demotes them.
 */
import { ROLES, can, type Role } from './permissions';

export const DEFAULT_WORKSPACE_NAME = 'My Workspace';

export interface WorkspaceSummary {
  id: string;
  name: string;
  description: string | null;
  role: Role;
  /** Epoch milliseconds: OR3's client types it as a number and sorts by subtraction. */
  createdAt: number;
  isActive: boolean;
}

export interface Membership {
  workspaceId: string;
  name: string;
  role: Role;
}

/** The caller's role in a live (not deleted) workspace, or null. One indexed read. */
export async function membershipOf(db: D1Database, workspaceId: string, userId: string): Promise<Membership | null> {
  const row = await db
    .prepare(
      `SELECT w.id, w.name, m.role FROM members m JOIN workspaces w ON w.id = m.workspace_id
        WHERE m.workspace_id = ? AND m.user_id = ? AND w.deleted_at IS NULL`,
    )
    .bind(workspaceId, userId)
    .first<{ id: string; name: string; role: Role }>();
  return row ? { workspaceId: row.id, name: row.name, role: row.role } : null;
}

export async function listWorkspaces(db: D1Database, userId: string, activeId: string | null): Promise<WorkspaceSummary[]> {
  const { results } = await db
    .prepare(
      `SELECT w.id, w.name, w.description, m.role, w.created_at FROM members m JOIN workspaces w ON w.id = m.workspace_id
        WHERE m.user_id = ? AND w.deleted_at IS NULL ORDER BY w.created_at DESC, w.id DESC`,
    )
    .bind(userId)
    .all<{ id: string; name: string; description: string | null; role: Role; created_at: number }>();
  return results.map((r) => ({
    id: r.id,
    name: r.name,
    description: r.description,
    role: r.role,
    createdAt: r.created_at,
    isActive: r.id === activeId,
  }));
}

export async function createWorkspace(db: D1Database, ownerId: string, name: string, description: string | null, now = Date.now()): Promise<string> {
  const id = crypto.randomUUID();
  await db.batch([
    db
      .prepare('INSERT INTO workspaces (id, name, description, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
      .bind(id, name, description, ownerId, now, now),
    db.prepare("INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) VALUES (?, ?, 'owner', ?, ?)").bind(id, ownerId, now, now),
  ]);
  return id;
}

export const CREATE_WINDOW_MS = 3600 * 1000;

/**
 * `createWorkspace` for `POST /api/workspaces`, limited to `perHour` workspaces created by the
 * same user in the last rolling hour (deleted ones count: deleting does not buy another). Sync
 * limits are counted per workspace inside each workspace's object, so without this a user could
 * multiply them by creating workspaces. The count and the insert are one statement (D1 runs
 * them one at a time), so parallel requests cannot overshoot; the route is rare, so counting in
 * D1 (over `workspaces_creator_idx`) costs nothing that matters.
 */
export async function createWorkspaceWithinLimit(
  db: D1Database,
  ownerId: string,
  name: string,
  description: string | null,
  perHour: number,
  now = Date.now(),
): Promise<{ ok: true; id: string; createdAt: number } | { ok: false; retryAfterMs: number }> {
  const id = crypto.randomUUID();
  const [created] = await db.batch([
    db
      .prepare(
        `INSERT INTO workspaces (id, name, description, created_by, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?5 WHERE (SELECT count(*) FROM workspaces WHERE created_by = ?4 AND created_at > ?5 - ?6) < ?7`,
      )
      .bind(id, name, description, ownerId, now, CREATE_WINDOW_MS, perHour),
    db
      .prepare(
        "INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) SELECT ?1, ?2, 'owner', ?3, ?3 WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = ?1)",
      )
      .bind(id, ownerId, now),
  ]);
  if (created!.meta.changes > 0) return { ok: true, id, createdAt: now };
  // A slot frees when the perHour-th most recent creation leaves the window.
  const blocking = await db
    .prepare('SELECT created_at FROM workspaces WHERE created_by = ? AND created_at > ? ORDER BY created_at DESC LIMIT 1 OFFSET ?')
    .bind(ownerId, now - CREATE_WINDOW_MS, perHour - 1)
    .first<{ created_at: number }>();
  return { ok: false, retryAfterMs: blocking ? blocking.created_at + CREATE_WINDOW_MS - now : 1000 };
}

/**
 * First sight of a user: if they belong to no live workspace, create "My Workspace" with them
 * as owner, and make their active workspace a live one. Safe under concurrency: the inserts run
 * only while no membership exists, inside one batch.
 */
export async function provisionDefaultWorkspace(db: D1Database, userId: string, now = Date.now()): Promise<{ id: string; createdAt: number } | null> {
  const id = crypto.randomUUID();
  const noMembership = `NOT EXISTS (SELECT 1 FROM members m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = ?1 AND w.deleted_at IS NULL)`;
  const [created] = await db.batch([
    db
      .prepare(`INSERT INTO workspaces (id, name, description, created_by, created_at, updated_at) SELECT ?2, ?3, NULL, ?1, ?4, ?4 WHERE ${noMembership}`)
      .bind(userId, id, DEFAULT_WORKSPACE_NAME, now),
    db
      .prepare(
        `INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) SELECT ?2, ?1, 'owner', ?3, ?3 WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = ?2)`,
      )
      .bind(userId, id, now),
    // Point the active workspace at a live membership when it is unset or no longer valid.
    db
      .prepare(
        `UPDATE users SET active_workspace_id = (
             SELECT m.workspace_id FROM members m JOIN workspaces w ON w.id = m.workspace_id
              WHERE m.user_id = ?1 AND w.deleted_at IS NULL ORDER BY w.created_at ASC, w.id ASC LIMIT 1)
          WHERE id = ?1 AND (active_workspace_id IS NULL OR NOT EXISTS (
             SELECT 1 FROM members m JOIN workspaces w ON w.id = m.workspace_id
              WHERE m.user_id = ?1 AND m.workspace_id = users.active_workspace_id AND w.deleted_at IS NULL))`,
      )
      .bind(userId),
  ]);
  return created!.meta.changes > 0 ? { id, createdAt: now } : null;
}

export async function setActiveWorkspace(db: D1Database, userId: string, workspaceId: string, now = Date.now()) {
  await db.prepare('UPDATE users SET active_workspace_id = ?, updated_at = ? WHERE id = ?').bind(workspaceId, now, userId).run();
}

export async function updateWorkspace(db: D1Database, id: string, patch: { name?: string; description?: string | null }, now = Date.now()) {
  await db
    .prepare(
      `UPDATE workspaces SET name = COALESCE(?, name), description = CASE WHEN ? THEN ? ELSE description END, updated_at = ?
        WHERE id = ? AND deleted_at IS NULL`,
    )
    .bind(patch.name ?? null, patch.description !== undefined ? 1 : 0, patch.description ?? null, now, id)
    .run();
}

/** Soft delete (or restore with `deleted = false`); returns whether anything changed. */
export async function setWorkspaceDeleted(db: D1Database, id: string, deleted: boolean, now = Date.now()): Promise<boolean> {
  const result = deleted
    ? await db.prepare('UPDATE workspaces SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL').bind(now, now, id).run()
    : await db.prepare('UPDATE workspaces SET deleted_at = NULL, updated_at = ? WHERE id = ? AND deleted_at IS NOT NULL').bind(now, id).run();
  return result.meta.changes > 0;
}

/**
 * Removes a workspace that never went into use (a fork whose replay failed), with its members
 * and invites, in one batch. Not a user-facing delete: those are soft (setWorkspaceDeleted).
 */
export async function discardWorkspace(db: D1Database, id: string): Promise<void> {
  await db.batch([
    db.prepare('DELETE FROM invites WHERE workspace_id = ?').bind(id),
    db.prepare('DELETE FROM members WHERE workspace_id = ?').bind(id),
    db.prepare('UPDATE users SET active_workspace_id = NULL WHERE active_workspace_id = ?').bind(id),
    db.prepare('DELETE FROM workspaces WHERE id = ?').bind(id),
  ]);
}

/** Every workspace the user is a member of, deleted or not (their sockets may be open in any). */
export async function memberWorkspaceIds(db: D1Database, userId: string): Promise<string[]> {
  const { results } = await db.prepare('SELECT workspace_id FROM members WHERE user_id = ?').bind(userId).all<{ workspace_id: string }>();
  return results.map((r) => r.workspace_id);
}

/** A workspace's record, deleted or not (an export's header); null when there is none by that id. */
export async function workspaceRecord(db: D1Database, id: string): Promise<{ name: string; description: string | null; createdAt: number } | null> {
  const row = await db
    .prepare('SELECT name, description, created_at FROM workspaces WHERE id = ?')
    .bind(id)
    .first<{ name: string; description: string | null; created_at: number }>();
  return row ? { name: row.name, description: row.description, createdAt: row.created_at } : null;
}

/** A workspace's name, deleted or not; null when there is none by that id. */
export async function workspaceName(db: D1Database, id: string): Promise<string | null> {
  return (await db.prepare('SELECT name FROM workspaces WHERE id = ?').bind(id).first<{ name: string }>())?.name ?? null;
}

export async function workspaceExists(db: D1Database, id: string): Promise<{ deleted: boolean } | null> {
  const row = await db.prepare('SELECT deleted_at FROM workspaces WHERE id = ?').bind(id).first<{ deleted_at: number | null }>();
  return row ? { deleted: row.deleted_at !== null } : null;
}

export interface MemberView {
  userId: string;
  email?: string;
  displayName?: string;
  role: Role;
}

export async function listMembers(db: D1Database, workspaceId: string): Promise<MemberView[]> {
  const { results } = await db
    .prepare(
      `SELECT m.user_id, m.role, u.email, u.display_name,
              (SELECT i.email FROM identities i WHERE i.user_id = u.id ORDER BY i.created_at LIMIT 1) AS identity_email
         FROM members m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ? ORDER BY m.created_at, m.user_id`,
    )
    .bind(workspaceId)
    .all<{ user_id: string; role: Role; email: string | null; display_name: string | null; identity_email: string | null }>();
  return results.map((r) => {
    const view: MemberView = { userId: r.user_id, role: r.role };
    const email = r.email ?? r.identity_email;
    if (email) view.email = email;
    if (r.display_name) view.displayName = r.display_name;
    return view;
  });
}

export type MemberChange = 'ok' | 'not_member' | 'last_owner' | 'no_user';

// The workspace keeps an owner unless the target is not an owner, stays an owner, or another owner exists.
const KEEPS_AN_OWNER = `(role != 'owner' OR ?3 = 'owner' OR (SELECT count(*) FROM members WHERE workspace_id = ?1 AND role = 'owner') > 1)`;

/** Changes an existing member's role, refusing to leave the workspace without an owner. */
export async function setMemberRole(db: D1Database, workspaceId: string, userId: string, role: Role, now = Date.now()): Promise<MemberChange> {
  const [result] = await db.batch([
    db
      .prepare(`UPDATE members SET role = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND user_id = ?2 AND ${KEEPS_AN_OWNER}`)
      .bind(workspaceId, userId, role, now),
    expireInvitesOfNonManager(db, workspaceId, userId, now),
  ]);
  if (result!.meta.changes > 0) return 'ok';
  return (await isMember(db, workspaceId, userId)) ? 'last_owner' : 'not_member';
}

/** Adds a member or changes their role (admin upsert), with the same last-owner rule. */
export async function upsertMember(db: D1Database, workspaceId: string, userId: string, role: Role, now = Date.now()): Promise<MemberChange> {
  if (!(await db.prepare('SELECT 1 AS x FROM users WHERE id = ?').bind(userId).first())) return 'no_user';
  const inserted = await db
    .prepare('INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING')
    .bind(workspaceId, userId, role, now, now)
    .run();
  if (inserted.meta.changes > 0) return 'ok';
  return setMemberRole(db, workspaceId, userId, role, now);
}

export async function removeMember(db: D1Database, workspaceId: string, userId: string, now = Date.now()): Promise<MemberChange> {
  const [result] = await db.batch([
    db.prepare(`DELETE FROM members WHERE workspace_id = ?1 AND user_id = ?2 AND ${KEEPS_AN_OWNER.replace('?3', "'removed'")}`).bind(workspaceId, userId),
    expireInvitesOfNonManager(db, workspaceId, userId, now),
  ]);
  if (result!.meta.changes > 0) return 'ok';
  return (await isMember(db, workspaceId, userId)) ? 'last_owner' : 'not_member';
}

async function isMember(db: D1Database, workspaceId: string, userId: string) {
  return (await db.prepare('SELECT 1 AS x FROM members WHERE workspace_id = ? AND user_id = ?').bind(workspaceId, userId).first()) !== null;
}

// ---------------------------------------------------------------------------------------------
// Invites: the token is shown once; only its SHA-256 is stored.

/** The roles allowed to manage users: only their invites may admit anyone. */
const MANAGER_ROLES = ROLES.filter((r) => can(r, 'users.manage'))
  .map((r) => `'${r}'`)
  .join(', ');

/**
 * SQL condition on a row of `invites`: it may still admit someone at `now` (a bound parameter
 * such as `?1`). Unused, unexpired, for a live workspace, and its creator is still a member
 * allowed to manage users: an owner who was removed or demoted cannot come back (or bring
 * anyone in) through an invite made while they were an owner. Part of the claiming statement
 * itself, so no removal can slip between the check and the claim.
 */
export function inviteClaimable(now: string): string {
  return `invites.accepted_at IS NULL AND invites.expires_at > ${now}
    AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = invites.workspace_id AND w.deleted_at IS NULL)
    AND EXISTS (SELECT 1 FROM members cm WHERE cm.workspace_id = invites.workspace_id AND cm.user_id = invites.created_by AND cm.role IN (${MANAGER_ROLES}))`;
}

/**
 * Expires the pending invites `userId` made in `workspaceId` unless they (still) may manage
 * users. Batched right after a removal or a role change, so it sees the outcome: a failed
 * change (last owner) or a promotion expires nothing. Expired rather than deleted, so a later
 * promotion does not bring old invites back and the record of who invited whom stays.
 */
function expireInvitesOfNonManager(db: D1Database, workspaceId: string, userId: string, now: number) {
  return db
    .prepare(
      `UPDATE invites SET expires_at = ?3
        WHERE workspace_id = ?1 AND created_by = ?2 AND accepted_at IS NULL AND expires_at > ?3
          AND NOT EXISTS (SELECT 1 FROM members WHERE workspace_id = ?1 AND user_id = ?2 AND role IN (${MANAGER_ROLES}))`,
    )
    .bind(workspaceId, userId, now);
}

/** Whether an invite could admit someone now (an early answer; the claim checks again). */
export async function inviteIsClaimable(db: D1Database, tokenHash: string, now = Date.now()): Promise<boolean> {
  return (
    (await db
      .prepare(`SELECT 1 AS x FROM invites WHERE token_hash = ?2 AND ${inviteClaimable('?1')}`)
      .bind(now, tokenHash)
      .first()) !== null
  );
}

export async function createInvite(
  db: D1Database,
  input: { id?: string; workspaceId: string; role: Role; tokenHash: string; createdBy: string; expiresAt: number; email?: string | null },
  now = Date.now(),
) {
  await db
    .prepare('INSERT INTO invites (id, workspace_id, role, token_hash, created_by, created_at, expires_at, email) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
    .bind(input.id ?? crypto.randomUUID(), input.workspaceId, input.role, input.tokenHash, input.createdBy, now, input.expiresAt, input.email ?? null)
    .run();
}

export interface InviteView {
  id: string;
  role: Role;
  createdBy: string;
  /** The address the invite was made for (OR3's invite routes name one); null when none was given. */
  email: string | null;
  /** ISO-8601, like the `expiresAt` that creating the invite returned. */
  expiresAt: string;
}

/** The invites of a workspace that could still admit someone, newest first; never the token hash. */
export async function listPendingInvites(db: D1Database, workspaceId: string, now = Date.now()): Promise<InviteView[]> {
  const { results } = await db
    .prepare(`SELECT id, role, created_by, email, expires_at FROM invites WHERE workspace_id = ?2 AND ${inviteClaimable('?1')} ORDER BY created_at DESC, id`)
    .bind(now, workspaceId)
    .all<{ id: string; role: Role; created_by: string; email: string | null; expires_at: number }>();
  return results.map((r) => ({ id: r.id, role: r.role, createdBy: r.created_by, email: r.email, expiresAt: new Date(r.expires_at).toISOString() }));
}

/** Revokes (expires) a pending invite of this workspace; false when there is none by that id. */
export async function revokeInvite(db: D1Database, workspaceId: string, inviteId: string, now = Date.now()): Promise<boolean> {
  const result = await db
    .prepare('UPDATE invites SET expires_at = ?3 WHERE id = ?1 AND workspace_id = ?2 AND accepted_at IS NULL AND expires_at > ?3')
    .bind(inviteId, workspaceId, now)
    .run();
  return result.meta.changes > 0;
}

export type InviteResult = { ok: true; workspaceId: string; role: Role } | { ok: false };

/**
 * Accepts an invite for `userId`: claims it atomically (see `inviteClaimable`) and adds the
 * membership in the same batch. An existing member keeps their current role.
 */
export async function acceptInvite(db: D1Database, tokenHash: string, userId: string, now = Date.now()): Promise<InviteResult> {
  const [claim] = await db.batch<{ workspace_id: string; role: Role }>([
    db
      .prepare(
        `UPDATE invites SET accepted_at = ?1, accepted_by = ?2
          WHERE token_hash = ?3 AND ${inviteClaimable('?1')}
        RETURNING workspace_id, role`,
      )
      .bind(now, userId, tokenHash),
    db
      .prepare(
        `INSERT INTO members (workspace_id, user_id, role, created_at, updated_at)
         SELECT workspace_id, ?2, role, ?1, ?1 FROM invites WHERE token_hash = ?3 AND accepted_by = ?2 AND accepted_at = ?1
         ON CONFLICT DO NOTHING`,
      )
      .bind(now, userId, tokenHash),
  ]);
  const row = claim?.results[0];
  return row ? { ok: true, workspaceId: row.workspace_id, role: row.role } : { ok: false };
}
