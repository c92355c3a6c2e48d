/**
 * D1 writes behind the account actions (docs/admin.md "Account actions"): ending every session
 * of a user, disabling and enabling, deleting a user with what happens to the workspaces they
 * alone own, and changing an email. Each is one D1 batch (a transaction), so a refusal or a
 * failure leaves nothing half-done.
 */

/** Revokes every session and refresh token and moves the token version on (tokens die at once). */
const BUMP_SQL = 'UPDATE users SET token_version = token_version + 1, updated_at = ?1 WHERE id = ?2';

function endSessionsStatements(db: D1Database, userId: string, now: number, onlyIf = 'true') {
  return [
    db.prepare(`${BUMP_SQL} AND ${onlyIf}`).bind(now, userId),
    db.prepare(`UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL AND ${onlyIf}`).bind(now, userId),
    db.prepare(`UPDATE refresh_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL AND ${onlyIf}`).bind(now, userId),
  ];
}

/** Whether another live (enabled) deployment admin remains besides `userId`. */
const OTHER_ADMIN = '(SELECT count(*) FROM users AS other WHERE other.is_admin = 1 AND other.disabled_at IS NULL AND other.id != ?2) > 0';

export type AccountChange = 'ok' | 'no_user' | 'last_admin';

/** Ends every session of the user; returns the new token version, or null for an unknown user. */
export async function endAllSessions(db: D1Database, userId: string, now = Date.now()): Promise<number | null> {
  const [, ...revocations] = endSessionsStatements(db, userId, now);
  const [bumped] = await db.batch<{ token_version: number }>([db.prepare(`${BUMP_SQL} RETURNING token_version`).bind(now, userId), ...revocations]);
  return bumped?.results[0]?.token_version ?? null;
}

/**
 * Disables a user and ends every session at once; never the last enabled admin. The guard and
 * the writes are one batch: the session writes apply only if the user row was disabled.
 */
export async function disableUser(db: D1Database, userId: string, now = Date.now()): Promise<AccountChange> {
  const [disabled] = await db.batch([
    db
      .prepare(`UPDATE users SET disabled_at = coalesce(disabled_at, ?1), updated_at = ?1 WHERE id = ?2 AND (is_admin = 0 OR ${OTHER_ADMIN})`)
      .bind(now, userId),
    // Only when the guard let the user be disabled (a refused disable changes nothing).
    ...endSessionsStatements(db, userId, now, '(SELECT disabled_at FROM users WHERE id = ?2) IS NOT NULL'),
  ]);
  if ((disabled?.meta.changes ?? 0) > 0) return 'ok';
  const row = await db.prepare('SELECT is_admin FROM users WHERE id = ?').bind(userId).first<{ is_admin: number }>();
  return row ? 'last_admin' : 'no_user';
}

/** Lets a disabled user sign in again; revives none of their ended sessions. */
export async function enableUser(db: D1Database, userId: string, now = Date.now()): Promise<boolean> {
  const result = await db.prepare('UPDATE users SET disabled_at = NULL, updated_at = ?1 WHERE id = ?2').bind(now, userId).run();
  return result.meta.changes > 0;
}

/** The live and deleted workspaces where `userId` is the only owner. */
export async function soleOwnedWorkspaces(db: D1Database, userId: string): Promise<{ id: string; name: string; deleted: boolean }[]> {
  const { results } = await db
    .prepare(
      `SELECT w.id, w.name, w.deleted_at FROM members m JOIN workspaces w ON w.id = m.workspace_id
        WHERE m.user_id = ?1 AND m.role = 'owner'
          AND NOT EXISTS (SELECT 1 FROM members o WHERE o.workspace_id = m.workspace_id AND o.role = 'owner' AND o.user_id != ?1)
        ORDER BY w.created_at`,
    )
    .bind(userId)
    .all<{ id: string; name: string; deleted_at: number | null }>();
  return results.map((w) => ({ id: w.id, name: w.name, deleted: w.deleted_at !== null }));
}

export type Disposition = { transferTo: string } | { delete: true };

/**
 * Deletes a user: the workspaces they alone own go to `transferTo` (as owner) or are
 * soft-deleted; then their pending invites, refresh tokens, sessions, identities, memberships
 * and the user row, in one batch (a transaction). The last-admin guard is read just before;
 * two admins deleting each other at the same instant is the one race it does not close.
 */
export async function deleteUser(db: D1Database, userId: string, sole: string[], disposition: Disposition, now = Date.now()): Promise<AccountChange> {
  const user = await db
    .prepare(`SELECT is_admin, ${OTHER_ADMIN.replace(/\?2/g, '?1')} AS other FROM users WHERE id = ?1`)
    .bind(userId)
    .first<{ is_admin: number; other: number }>();
  if (!user) return 'no_user';
  if (user.is_admin === 1 && !user.other) return 'last_admin';
  const ids = JSON.stringify(sole);
  const workspaceWrites =
    'transferTo' in disposition
      ? [
          db
            .prepare(
              `INSERT INTO members (workspace_id, user_id, role, created_at, updated_at) SELECT value, ?1, 'owner', ?3, ?3 FROM json_each(?2) WHERE true
                 ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = 'owner', updated_at = excluded.updated_at`,
            )
            .bind(disposition.transferTo, ids, now),
        ]
      : [
          db
            .prepare(`UPDATE workspaces SET deleted_at = coalesce(deleted_at, ?1), updated_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))`)
            .bind(now, ids),
        ];
  await db.batch([
    ...workspaceWrites,
    db.prepare(`DELETE FROM invites WHERE created_by = ?1 AND accepted_at IS NULL`).bind(userId),
    db.prepare('DELETE FROM refresh_tokens WHERE user_id = ?1').bind(userId),
    db.prepare('DELETE FROM sessions WHERE user_id = ?1').bind(userId),
    db.prepare('DELETE FROM identities WHERE user_id = ?1').bind(userId),
    db.prepare('DELETE FROM members WHERE user_id = ?1').bind(userId),
    db.prepare('DELETE FROM users WHERE id = ?1').bind(userId),
  ]);
  return 'ok';
}

/** Sets a new email; 'taken' when another account holds it (the unique index decides). */
export async function changeEmail(db: D1Database, userId: string, email: string, now = Date.now()): Promise<'ok' | 'taken'> {
  try {
    await db.prepare('UPDATE users SET email = ?1, updated_at = ?2 WHERE id = ?3').bind(email, now, userId).run();
    return 'ok';
  } catch (err) {
    if (err instanceof Error && /UNIQUE/i.test(err.message)) return 'taken';
    throw err;
  }
}

/**
 * Redeems a reset link: sets the hash and moves the token version on, only if the version is
 * still the one the link was made for (so a link works once, and a later sign-out voids it).
 */
export async function resetPassword(db: D1Database, userId: string, tokenVersion: number, passwordHash: string, now = Date.now()): Promise<boolean> {
  const [update] = await db.batch([
    db
      .prepare(
        'UPDATE users SET password_hash = ?3, token_version = token_version + 1, updated_at = ?1 WHERE id = ?2 AND token_version = ?4 AND disabled_at IS NULL',
      )
      .bind(now, userId, passwordHash, tokenVersion),
    // Only when the reset applied (the hash is now the new one).
    db
      .prepare('UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL AND (SELECT password_hash FROM users WHERE id = ?2) = ?3')
      .bind(now, userId, passwordHash),
    db
      .prepare('UPDATE refresh_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL AND (SELECT password_hash FROM users WHERE id = ?2) = ?3')
      .bind(now, userId, passwordHash),
  ]);
  return (update?.meta.changes ?? 0) > 0;
}
