/**
 * Sessions and their refresh tokens in D1 (docs/auth.md "Tokens"): a session per sign-in,
 * refresh tokens rotated on each use with a grace window and reuse detection, and the one read
 * that checks a session with its user (and, given a workspace, the membership).
 */
import { randomToken, sha256Hex, timingSafeEqual } from '../crypto';
import { childSecret, childTokenId, parseRefreshToken } from './tokens';
import type { UserRow } from './store';

/** A session ends this long after sign-in, however actively it is refreshed. */
export const SESSION_ABSOLUTE_MS = 90 * 24 * 3600 * 1000;

export interface IssuedRefresh {
  sessionId: string;
  refreshToken: string;
}

/** Starts a session with its first refresh token (one batch). */
export async function createSession(db: D1Database, userId: string, refreshTtlMs: number, userAgent: string | null, now = Date.now()): Promise<IssuedRefresh> {
  const sessionId = crypto.randomUUID();
  const tokenId = crypto.randomUUID();
  const secret = randomToken();
  const expiresAt = now + SESSION_ABSOLUTE_MS;
  await db.batch([
    db
      .prepare('INSERT INTO sessions (id, user_id, created_at, expires_at, last_seen_at, revoked_at, user_agent) VALUES (?, ?, ?, ?, ?, NULL, ?)')
      .bind(sessionId, userId, now, expiresAt, now, userAgent?.slice(0, 256) ?? null),
    db
      .prepare('INSERT INTO refresh_tokens (id, session_id, user_id, secret_hash, parent_id, created_at, expires_at) VALUES (?, ?, ?, ?, NULL, ?, ?)')
      .bind(tokenId, sessionId, userId, await sha256Hex(secret), now, Math.min(now + refreshTtlMs, expiresAt)),
  ]);
  return { sessionId, refreshToken: `${tokenId}.${secret}` };
}

/** Children one session (family) may create per minute; grace-window answers do not count. */
export const REFRESH_ROTATIONS_PER_MINUTE = 10;

interface RefreshRow {
  id: string;
  session_id: string;
  user_id: string;
  secret_hash: string;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
  session_expires_at: number;
  session_revoked_at: number | null;
  disabled_at: number | null;
  token_version: number;
}

export type RotateResult =
  | { ok: true; userId: string; sessionId: string; tokenVersion: number; refreshToken: string }
  | { ok: false; reason: 'invalid' | 'expired' | 'revoked' }
  /** The session (family) rotated `maxPerMinute` times in the last minute already. */
  | { ok: false; reason: 'rate_limited' }
  /** A rotated token came back: the session was revoked (its sockets must close too). */
  | { ok: false; reason: 'reused'; userId: string; sessionId: string };

/**
 * Rotates a refresh token.
 *
 * - Unused token: claimed atomically (`used_at IS NULL`), and its child is created. The child's
 *   id and secret are derived from the parent, so two concurrent refreshes of one token create
 *   exactly one child (unique `parent_id`) and both callers receive it.
 * - Used token whose child is still unused, within the grace window: the same child again.
 * - Any other reuse: the whole session (family) is revoked.
 *
 * The rate limit counts the family's rotations, in the claim itself: at most `maxPerMinute`
 * children per session per minute. A request inside the grace window creates nothing and is not
 * counted, so any number of concurrent requests carrying one refresh cookie all succeed
 * (docs/auth.md "Transparent refresh"; a limiter counting requests refused half of 20).
 */
export async function rotateRefreshToken(
  db: D1Database,
  /** Keys for deriving child secrets, current first; a previous key still serves grace retries. */
  serverKeys: string[],
  token: string,
  refreshTtlMs: number,
  graceMs: number,
  now = Date.now(),
  /** Rotations (new children) one session may make per minute. */
  maxPerMinute = REFRESH_ROTATIONS_PER_MINUTE,
): Promise<RotateResult> {
  const parsed = parseRefreshToken(token);
  if (!parsed) return { ok: false, reason: 'invalid' };
  const row = await db
    .prepare(
      `SELECT r.id, r.session_id, r.user_id, r.secret_hash, r.expires_at, r.used_at, r.revoked_at,
              s.expires_at AS session_expires_at, s.revoked_at AS session_revoked_at, u.disabled_at, u.token_version
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = r.user_id
        WHERE r.id = ?`,
    )
    .bind(parsed.id)
    .first<RefreshRow>();
  if (!row || !timingSafeEqual(row.secret_hash, await sha256Hex(parsed.secret))) return { ok: false, reason: 'invalid' };
  if (row.revoked_at !== null || row.session_revoked_at !== null || row.disabled_at !== null) return { ok: false, reason: 'revoked' };
  if (row.expires_at <= now || row.session_expires_at <= now) return { ok: false, reason: 'expired' };

  const childId = await childTokenId(row.id);
  const issue = (secret: string) => ({
    ok: true as const,
    userId: row.user_id,
    sessionId: row.session_id,
    tokenVersion: row.token_version,
    refreshToken: `${childId}.${secret}`,
  });

  if (row.used_at === null) {
    const secret = await childSecret(serverKeys[0]!, row.id, parsed.secret);
    const childExpires = Math.min(now + refreshTtlMs, row.session_expires_at);
    // Claim and create in one transaction; the child insert only happens if the claim did. The
    // claim also holds the family's rate limit (children created in the last minute).
    const [claim] = await db.batch([
      db
        .prepare(
          `UPDATE refresh_tokens SET used_at = ?1 WHERE id = ?2 AND used_at IS NULL AND revoked_at IS NULL
             AND (SELECT count(*) FROM refresh_tokens WHERE session_id = ?3 AND created_at > ?1 - 60000) <= ?4`,
        )
        .bind(now, row.id, row.session_id, maxPerMinute),
      db
        .prepare(
          `INSERT INTO refresh_tokens (id, session_id, user_id, secret_hash, parent_id, created_at, expires_at)
           SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT used_at FROM refresh_tokens WHERE id = ?) = ?
           ON CONFLICT DO NOTHING`,
        )
        .bind(childId, row.session_id, row.user_id, await sha256Hex(secret), row.id, now, childExpires, row.id, now),
      db.prepare('UPDATE sessions SET last_seen_at = ? WHERE id = ?').bind(now, row.session_id),
    ]);
    if ((claim?.meta.changes ?? 0) > 0) return issue(secret);
    // Not claimed: a concurrent request did (the grace rule below hands out its child), or the
    // family is over its rate (the token is still unused).
    const current = await db
      .prepare('SELECT used_at, revoked_at FROM refresh_tokens WHERE id = ?')
      .bind(row.id)
      .first<{ used_at: number | null; revoked_at: number | null }>();
    if (!current || current.revoked_at !== null) return { ok: false, reason: 'revoked' };
    if (current.used_at === null) return { ok: false, reason: 'rate_limited' };
    row.used_at = current.used_at;
  }

  // Already used: only the immediate parent of a still-unused child, inside the grace window.
  const child = await db
    .prepare('SELECT secret_hash, used_at, revoked_at FROM refresh_tokens WHERE id = ?')
    .bind(childId)
    .first<{ secret_hash: string; used_at: number | null; revoked_at: number | null }>();
  if (now - row.used_at <= graceMs && child && child.used_at === null && child.revoked_at === null) {
    // The child was derived with whichever key was current then; a rotation may have happened since.
    for (const key of serverKeys) {
      const secret = await childSecret(key, row.id, parsed.secret);
      if (timingSafeEqual(child.secret_hash, await sha256Hex(secret))) return issue(secret);
    }
  }
  await revokeSession(db, row.session_id, now);
  return { ok: false, reason: 'reused', userId: row.user_id, sessionId: row.session_id };
}

/** Revokes a session and every refresh token in it. */
export async function revokeSession(db: D1Database, sessionId: string, now = Date.now()) {
  await db.batch([
    db.prepare('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').bind(now, sessionId),
    db.prepare('UPDATE refresh_tokens SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL').bind(now, sessionId),
  ]);
}

/** The user a session belongs to, live or not; null when there is no such session. */
export async function sessionOwner(db: D1Database, sessionId: string): Promise<string | null> {
  return (await db.prepare('SELECT user_id FROM sessions WHERE id = ?').bind(sessionId).first<{ user_id: string }>())?.user_id ?? null;
}

/** The refresh token's session id, for sign-out by refresh cookie. Verifies the secret. */
export async function sessionOfRefreshToken(db: D1Database, token: string): Promise<string | null> {
  const parsed = parseRefreshToken(token);
  if (!parsed) return null;
  const row = await db
    .prepare('SELECT session_id, secret_hash FROM refresh_tokens WHERE id = ?')
    .bind(parsed.id)
    .first<{ session_id: string; secret_hash: string }>();
  if (!row || !timingSafeEqual(row.secret_hash, await sha256Hex(parsed.secret))) return null;
  return row.session_id;
}

export interface SessionAuthRow extends UserRow {
  session_revoked_at: number | null;
  session_expires_at: number;
  /** With a workspace asked for: its name and the user's role there (null when not a member of a live workspace). */
  member_workspace_name?: string | null;
  member_role?: string | null;
}

const SESSION_AUTH_COLUMNS = `u.id, u.email, u.display_name, u.password_hash, u.token_version, u.is_admin, u.active_workspace_id, u.disabled_at,
  s.revoked_at AS session_revoked_at, s.expires_at AS session_expires_at`;

/**
 * One indexed read per authenticated request: the session and its user. Given a workspace id
 * (workspace-scoped routes), the same read also brings the user's membership of that workspace,
 * with exactly the rule of `membershipOf` (a live workspace), so authorizing costs no second
 * round trip to D1.
 */
export async function loadSessionAuth(db: D1Database, sessionId: string, userId: string, workspaceId?: string): Promise<SessionAuthRow | null> {
  if (workspaceId === undefined) {
    return db
      .prepare(`SELECT ${SESSION_AUTH_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ? AND s.user_id = ?`)
      .bind(sessionId, userId)
      .first<SessionAuthRow>();
  }
  return db
    .prepare(
      `SELECT ${SESSION_AUTH_COLUMNS}, w.name AS member_workspace_name, CASE WHEN w.id IS NULL THEN NULL ELSE m.role END AS member_role
         FROM sessions s JOIN users u ON u.id = s.user_id
         LEFT JOIN members m ON m.workspace_id = ?3 AND m.user_id = s.user_id
         LEFT JOIN workspaces w ON w.id = m.workspace_id AND w.deleted_at IS NULL
        WHERE s.id = ?1 AND s.user_id = ?2`,
    )
    .bind(sessionId, userId, workspaceId)
    .first<SessionAuthRow>();
}

/**
 * A user's disabled flag and their role in a live workspace, in one read: what a federated
 * user's socket ticket is checked against (it has no session to read; access.ts).
 */
export async function loadUserAuth(db: D1Database, userId: string, workspaceId: string) {
  return db
    .prepare(
      `SELECT u.disabled_at, CASE WHEN w.id IS NULL THEN NULL ELSE m.role END AS member_role
         FROM users u
         LEFT JOIN members m ON m.workspace_id = ?2 AND m.user_id = u.id
         LEFT JOIN workspaces w ON w.id = m.workspace_id AND w.deleted_at IS NULL
        WHERE u.id = ?1`,
    )
    .bind(userId, workspaceId)
    .first<{ disabled_at: number | null; member_role: string | null }>();
}
