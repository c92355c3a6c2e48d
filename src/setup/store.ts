/**
 * The first deployment admin, made through a one-time setup link (docs/operations.md "First
 * admin"). `npm run deploy` writes the link's token hash while no admin exists; redeeming it
 * creates the admin and deletes every pending token in one batch, so a link works once and only
 * until some admin exists. Read only on the setup path and on a refused registration: never on a
 * frequent path.
 */
import { anyAdminExists, normalizeEmail } from '../auth/store';

export type SetupResult = { ok: true; userId: string } | { ok: false; reason: 'setup_complete' | 'invalid_setup_token' | 'email_taken' };

/**
 * Creates the first admin when no admin exists and either `tokenHash` names a pending setup token
 * or `tokenHash` is null (development, where setup needs no link). Atomic: two redemptions racing
 * make at most one admin.
 */
export async function createFirstAdmin(
  db: D1Database,
  input: { email: string; displayName: string | null; passwordHash: string; tokenHash: string | null },
  now = Date.now(),
): Promise<SetupResult> {
  const userId = crypto.randomUUID();
  const email = normalizeEmail(input.email);
  await db.batch([
    db
      .prepare(
        `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, 0, 1, ?5, ?5
          WHERE NOT EXISTS (SELECT 1 FROM users WHERE is_admin = 1)
            AND (?6 IS NULL OR EXISTS (SELECT 1 FROM setup_tokens WHERE token_hash = ?6))
         ON CONFLICT(email) DO NOTHING`,
      )
      .bind(userId, email, input.displayName, input.passwordHash, now, input.tokenHash),
    db.prepare('DELETE FROM setup_tokens WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)').bind(userId),
  ]);
  if (await db.prepare('SELECT 1 AS x FROM users WHERE id = ?').bind(userId).first()) return { ok: true, userId };
  if (await anyAdminExists(db)) return { ok: false, reason: 'setup_complete' };
  if (input.tokenHash !== null && !(await db.prepare('SELECT 1 AS x FROM setup_tokens WHERE token_hash = ?').bind(input.tokenHash).first())) {
    return { ok: false, reason: 'invalid_setup_token' };
  }
  return { ok: false, reason: 'email_taken' };
}
