/**
 * D1 access for the deployment admin API (docs/admin.md): searching users and workspaces, and
 * granting or revoking the deployment-admin flag. Membership changes reuse workspaces/store.ts,
 * so admins and owners obey the same last-owner rule.
 */
import { PLATFORM } from '../limits';

export interface AdminPage {
  /** Matched literally, anywhere in an email, a display name or a workspace name; or an exact id. */
  q?: string;
  limit: number;
  offset: number;
}

/**
 * A LIKE pattern that matches `q` literally anywhere (with `ESCAPE '\'`); null when it would be
 * longer than D1 accepts, which the caller answers as a bad query.
 */
export function likePattern(q: string): string | null {
  const pattern = `%${q.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
  return new TextEncoder().encode(pattern).byteLength > PLATFORM.likePatternBytes ? null : pattern;
}

/** Users newest first, a page at a time (one more row is read to tell whether another page exists). */
export async function listUsers(db: D1Database, page: AdminPage & { pattern: string | null }) {
  const { results } = await db
    .prepare(
      `SELECT id, email, display_name, is_admin, disabled_at, created_at FROM users
        WHERE ?1 IS NULL OR lower(coalesce(email, '')) LIKE ?1 ESCAPE '\\' OR lower(coalesce(display_name, '')) LIKE ?1 ESCAPE '\\' OR id = ?2
        ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4`,
    )
    .bind(page.pattern, page.q ?? null, page.limit + 1, page.offset)
    .all<{ id: string; email: string | null; display_name: string | null; is_admin: number; disabled_at: number | null; created_at: number }>();
  return {
    users: results.slice(0, page.limit).map((u) => ({
      id: u.id,
      email: u.email,
      displayName: u.display_name,
      deploymentAdmin: u.is_admin === 1,
      disabled: u.disabled_at !== null,
      createdAt: new Date(u.created_at).toISOString(),
    })),
    nextOffset: results.length > page.limit ? page.offset + page.limit : null,
  };
}

/** Workspaces newest first with their member counts; deleted ones only when asked for. */
export async function listAllWorkspaces(db: D1Database, page: AdminPage & { pattern: string | null; includeDeleted: boolean }) {
  const { results } = await db
    .prepare(
      `SELECT w.id, w.name, w.description, w.created_at, w.deleted_at, (SELECT count(*) FROM members m WHERE m.workspace_id = w.id) AS member_count
         FROM workspaces w
        WHERE (?1 IS NULL OR lower(w.name) LIKE ?1 ESCAPE '\\' OR w.id = ?2) AND (?3 = 1 OR w.deleted_at IS NULL)
        ORDER BY w.created_at DESC, w.id LIMIT ?4 OFFSET ?5`,
    )
    .bind(page.pattern, page.q ?? null, page.includeDeleted ? 1 : 0, page.limit + 1, page.offset)
    .all<{ id: string; name: string; description: string | null; created_at: number; deleted_at: number | null; member_count: number }>();
  return {
    workspaces: results.slice(0, page.limit).map((w) => ({
      id: w.id,
      name: w.name,
      description: w.description,
      memberCount: w.member_count,
      createdAt: new Date(w.created_at).toISOString(),
      deletedAt: w.deleted_at === null ? null : new Date(w.deleted_at).toISOString(),
    })),
    nextOffset: results.length > page.limit ? page.offset + page.limit : null,
  };
}

/** Makes a user a deployment admin; false when there is no such user. */
export async function grantAdmin(db: D1Database, userId: string, now = Date.now()): Promise<boolean> {
  const result = await db.prepare('UPDATE users SET is_admin = 1, updated_at = ? WHERE id = ?').bind(now, userId).run();
  return result.meta.changes > 0;
}

/**
 * Takes the flag away unless that would leave no admin who can act. One statement, so the count
 * and the update cannot interleave with another revoke; disabled admins cannot act, so they do
 * not count towards "another admin remains". Revoking a non-admin changes nothing and is 'ok'.
 */
export async function revokeAdmin(db: D1Database, userId: string, now = Date.now()): Promise<'ok' | 'no_user' | 'last_admin'> {
  const result = await db
    .prepare(
      'UPDATE users SET is_admin = 0, updated_at = ? WHERE id = ? AND is_admin = 1 AND (SELECT count(*) FROM users AS other WHERE other.is_admin = 1 AND other.disabled_at IS NULL AND other.id != users.id) > 0',
    )
    .bind(now, userId)
    .run();
  if (result.meta.changes > 0) return 'ok';
  const row = await db.prepare('SELECT is_admin FROM users WHERE id = ?').bind(userId).first<{ is_admin: number }>();
  if (!row) return 'no_user';
  return row.is_admin === 1 ? 'last_admin' : 'ok';
}
