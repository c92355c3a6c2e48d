/**
 * D1 access for identity: users (federated identities are in src/identity-db/, login failure
 * counters in src/login-attempts/, sessions and refresh tokens in each user's object: src/user-db/). Plain prepared statements (the schema lives in drizzle/d1.ts); every query
 * here is served by an index from that schema.
 *
 * D1 has no interactive transactions. Races are closed with single conditional statements
 * (`UPDATE … WHERE used_at IS NULL`) and with `batch()`, which runs its statements as one
 * transaction on D1's single writer, so a `NOT EXISTS` check inside a batch cannot interleave
 * with another batch.
 */
import { inviteClaimable } from '../workspace-records/store';
import { sha256Hex } from '../crypto';

export interface UserRow {
  id: string;
  email: string | null;
  display_name: string | null;
  password_hash: string | null;
  token_version: number;
  is_admin: number;
  active_workspace_id: string | null;
  disabled_at: number | null;
}

const USER_COLUMNS = 'id, email, display_name, password_hash, token_version, is_admin, active_workspace_id, disabled_at';

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export async function findUserByEmail(db: D1Database, email: string): Promise<UserRow | null> {
  return db.prepare(`SELECT ${USER_COLUMNS} FROM users WHERE email = ?`).bind(normalizeEmail(email)).first<UserRow>();
}

export async function findUserById(db: D1Database, id: string): Promise<UserRow | null> {
  return db.prepare(`SELECT ${USER_COLUMNS} FROM users WHERE id = ?`).bind(id).first<UserRow>();
}

/** Creates a password user; returns its id, or null when the email is taken (no error, no race). */
export async function createPasswordUser(
  db: D1Database,
  input: { email: string; displayName?: string | null; passwordHash: string; isAdmin?: boolean },
  now = Date.now(),
): Promise<string | null> {
  const id = crypto.randomUUID();
  const row = await db
    .prepare(
      `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, created_at, updated_at)
       VALUES (?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT(email) DO NOTHING RETURNING id`,
    )
    .bind(id, normalizeEmail(input.email), input.displayName ?? null, input.passwordHash, input.isAdmin ? 1 : 0, now, now)
    .first<{ id: string }>();
  return row?.id ?? null;
}

/**
 * Creates the bootstrap admin once: only while no deployment admin exists and the email is
 * free. Later boots with other values change nothing (no password reset, no extra admin).
 */
export async function createBootstrapAdmin(db: D1Database, email: string, passwordHash: string, now = Date.now()) {
  const result = await db
    .prepare(
      `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, created_at, updated_at)
       SELECT ?, ?, NULL, ?, 0, 1, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users WHERE is_admin = 1)
       ON CONFLICT(email) DO NOTHING`,
    )
    .bind(crypto.randomUUID(), normalizeEmail(email), passwordHash, now, now)
    .run();
  return result.meta.changes > 0;
}

export async function anyAdminExists(db: D1Database): Promise<boolean> {
  return (await db.prepare('SELECT 1 AS x FROM users WHERE is_admin = 1 LIMIT 1').first()) !== null;
}

export type InvitedUserResult = 'created' | 'email_taken' | 'invalid_invite';

/**
 * Registers a user through an invite in one batch: the invite is claimed only while it may
 * still admit someone (`inviteClaimable`: unused, unexpired, live workspace, creator still an
 * owner) and the email is free; the user, the membership and
 * the active workspace are written only if that claim succeeded. So one invite makes at most one
 * account, and a taken email never burns an invite.
 */
export async function createInvitedUser(
  db: D1Database,
  input: { email: string; displayName?: string | null; passwordHash: string; inviteHash: string },
  now = Date.now(),
): Promise<{ result: InvitedUserResult; userId?: string }> {
  const userId = crypto.randomUUID();
  const email = normalizeEmail(input.email);
  const claimed = `SELECT 1 FROM invites WHERE token_hash = ?1 AND accepted_by = ?2`;
  await db.batch([
    db
      .prepare(
        `UPDATE invites SET accepted_at = ?3, accepted_by = ?2
          WHERE token_hash = ?1 AND ${inviteClaimable('?3')}
            AND NOT EXISTS (SELECT 1 FROM users WHERE email = ?4)`,
      )
      .bind(input.inviteHash, userId, now, email),
    db
      .prepare(
        `INSERT INTO users (id, email, display_name, password_hash, token_version, is_admin, active_workspace_id, created_at, updated_at)
         SELECT ?2, ?4, ?5, ?6, 0, 0, (SELECT workspace_id FROM invites WHERE token_hash = ?1 AND accepted_by = ?2), ?3, ?3
          WHERE EXISTS (${claimed})`,
      )
      .bind(input.inviteHash, userId, now, email, input.displayName ?? null, input.passwordHash),
    db
      .prepare(
        `INSERT INTO members (workspace_id, user_id, role, created_at, updated_at)
         SELECT workspace_id, ?2, role, ?3, ?3 FROM invites WHERE token_hash = ?1 AND accepted_by = ?2`,
      )
      .bind(input.inviteHash, userId, now),
  ]);
  if (await db.prepare('SELECT 1 AS x FROM users WHERE id = ?').bind(userId).first()) return { result: 'created', userId };
  const taken = await db.prepare('SELECT 1 AS x FROM users WHERE email = ?').bind(email).first();
  return { result: taken ? 'email_taken' : 'invalid_invite' };
}

/**
 * Changes a password: the new hash and the token-version bump apply only if the stored hash is
 * still the one the caller verified against (a concurrent change loses). Returns the new token
 * version, or null when the password changed underneath. The other sessions are then ended in
 * the user's object (`reloadFacts`), which re-reads this row.
 */
export async function changePassword(db: D1Database, userId: string, oldHash: string, newHash: string, now = Date.now()): Promise<number | null> {
  const row = await db
    .prepare(
      'UPDATE users SET password_hash = ?3, token_version = token_version + 1, updated_at = ?1 WHERE id = ?2 AND password_hash = ?4 RETURNING token_version',
    )
    .bind(now, userId, newHash, oldHash)
    .first<{ token_version: number }>();
  return row?.token_version ?? null;
}

/** Replaces a hash with one of the current parameters (same password: sessions stay valid). */
export async function rehashPassword(db: D1Database, userId: string, passwordHash: string, now = Date.now()) {
  await db.prepare('UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?').bind(passwordHash, now, userId).run();
}

/** Touches the users table: the deep health check's D1 probe, so unapplied migrations show up. */
export async function probeUsersTable(db: D1Database): Promise<void> {
  await db.prepare('SELECT count(*) AS n FROM users LIMIT 1').first();
}

// ---------------------------------------------------------------------------------------------
// Login attempt keys (per account, so rotating IPs does not help an attacker; the counters live
// in one object per key: src/login-attempts/)

/**
 * The counter a password attempt is charged to. Sign-in counts per email (anyone may try any
 * email, so the owner shares that counter with whoever is guessing); change-password counts per
 * signed-in user, in its own namespace, so someone else's failed sign-ins never lock the owner
 * out of changing their password. The prefixes keep the namespaces apart: no sign-in input
 * (any string) can name a change-password counter. A sign-in key names the email by its SHA-256,
 * so the address is not the object's name (which the platform shows in its dashboards and logs).
 */
export const attemptKey = {
  signIn: async (email: string) => `signin:${await sha256Hex(normalizeEmail(email))}`,
  changePassword: (userId: string) => `cpw:${userId}`,
};
