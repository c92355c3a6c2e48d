/**
 * A user's sessions and refresh-token families in their own object's SQLite (docs/architecture.md
 * "Sessions live with their user"; docs/auth.md "Tokens"). The rules are the ones D1 applied
 * before: rotation on each use with a grace window, reuse detection revoking the family, a
 * per-family rotation limit. Every function here is synchronous SQL: the caller hashes first and
 * then runs one of these inside `transactionSync`, so no other request interleaves with a
 * rotation (the object is single-threaded between awaits).
 */
import { timingSafeEqual } from '../crypto';

/** A session ends this long after sign-in, however actively it is refreshed. */
export const SESSION_ABSOLUTE_MS = 90 * 24 * 3600 * 1000;

/** Children one session (family) may create per minute; grace-window answers do not count. */
export const REFRESH_ROTATIONS_PER_MINUTE = 10;

/** Sessions kept per user (live ones; the oldest live session past this is ended at sign-in). */
export const MAX_SESSIONS = 200;

/** Rows the object keeps past their end, so a late retry is answered as expired, not unknown. */
const KEEP_ENDED_MS = 24 * 3600 * 1000;

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL, revoked_at INTEGER, user_agent TEXT);
  CREATE TABLE IF NOT EXISTS refresh_tokens (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, secret_hash TEXT NOT NULL, parent_id TEXT UNIQUE,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER, revoked_at INTEGER);
  CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens (session_id, created_at);`;

export type SessionRow = {
  id: string;
  created_at: number;
  expires_at: number;
  last_seen_at: number;
  revoked_at: number | null;
  user_agent: string | null;
};

export type TokenRow = {
  id: string;
  session_id: string;
  secret_hash: string;
  parent_id: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
};

export function insertSession(sql: SqlStorage, s: SessionRow) {
  sql.exec(
    'INSERT OR IGNORE INTO sessions (id, created_at, expires_at, last_seen_at, revoked_at, user_agent) VALUES (?, ?, ?, ?, ?, ?)',
    s.id,
    s.created_at,
    s.expires_at,
    s.last_seen_at,
    s.revoked_at,
    s.user_agent,
  );
}

export function insertToken(sql: SqlStorage, t: TokenRow) {
  sql.exec(
    'INSERT OR IGNORE INTO refresh_tokens (id, session_id, secret_hash, parent_id, created_at, expires_at, used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    t.id,
    t.session_id,
    t.secret_hash,
    t.parent_id,
    t.created_at,
    t.expires_at,
    t.used_at,
    t.revoked_at,
  );
}

/**
 * Starts a session with its first refresh token. Also drops rows that ended more than a day ago
 * and ends the oldest live sessions past MAX_SESSIONS, so a user's object stays small however
 * often they sign in.
 */
export function createSession(
  sql: SqlStorage,
  input: { sessionId: string; tokenId: string; secretHash: string; userAgent: string | null; refreshTtlMs: number; now: number },
): { revoked: string[] } {
  const { now } = input;
  const expiresAt = now + SESSION_ABSOLUTE_MS;
  sql.exec('DELETE FROM refresh_tokens WHERE expires_at <= ? OR revoked_at <= ?', now - KEEP_ENDED_MS, now - KEEP_ENDED_MS);
  sql.exec('DELETE FROM sessions WHERE expires_at <= ? OR revoked_at <= ?', now - KEEP_ENDED_MS, now - KEEP_ENDED_MS);
  const revoked = sql
    .exec<{ id: string }>(
      'SELECT id FROM sessions WHERE revoked_at IS NULL AND expires_at > ? ORDER BY last_seen_at DESC, rowid DESC LIMIT -1 OFFSET ?',
      now,
      MAX_SESSIONS - 1,
    )
    .toArray()
    .map((r) => r.id);
  for (const id of revoked) revokeSession(sql, id, now);
  insertSession(sql, {
    id: input.sessionId,
    created_at: now,
    expires_at: expiresAt,
    last_seen_at: now,
    revoked_at: null,
    user_agent: input.userAgent?.slice(0, 256) ?? null,
  });
  insertToken(sql, {
    id: input.tokenId,
    session_id: input.sessionId,
    secret_hash: input.secretHash,
    parent_id: null,
    created_at: now,
    expires_at: Math.min(now + input.refreshTtlMs, expiresAt),
    used_at: null,
    revoked_at: null,
  });
  return { revoked };
}

/** What the caller computed before the transaction: hashes need `await`, the SQL must not. */
export interface RotateInput {
  tokenId: string;
  secretHash: string;
  childId: string;
  /** The child's secret and its hash under each server key, current first. */
  children: { secret: string; hash: string }[];
  refreshTtlMs: number;
  graceMs: number;
  maxPerMinute: number;
  disabled: boolean;
  now: number;
}

export type RotateOutcome =
  | { ok: true; sessionId: string; childId: string; secret: string }
  | { ok: false; reason: 'invalid' | 'expired' | 'revoked' | 'rate_limited' }
  /** A rotated token came back: its session was revoked here. */
  | { ok: false; reason: 'reused'; sessionId: string };

/**
 * Rotates a refresh token.
 *
 * - Unused token: marked used and its child created. The child's id and secret are derived from
 *   the parent (tokens.ts), so a retry finds the same child.
 * - Used token whose child is still unused, within the grace window: the same child again, not
 *   counted against the rate (any number of tabs sharing one refresh cookie all succeed).
 * - Any other reuse: the whole session (family) is revoked.
 *
 * The rate limit counts the family's tokens created in the last minute: at most `maxPerMinute`
 * children per session per minute.
 */
export function rotate(sql: SqlStorage, input: RotateInput): RotateOutcome {
  const { now } = input;
  const row = sql
    .exec<TokenRow & { session_expires_at: number; session_revoked_at: number | null }>(
      `SELECT r.*, s.expires_at AS session_expires_at, s.revoked_at AS session_revoked_at
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.id = ?`,
      input.tokenId,
    )
    .toArray()[0];
  if (!row || !timingSafeEqual(row.secret_hash, input.secretHash)) return { ok: false, reason: 'invalid' };
  if (row.revoked_at !== null || row.session_revoked_at !== null || input.disabled) return { ok: false, reason: 'revoked' };
  if (row.expires_at <= now || row.session_expires_at <= now) return { ok: false, reason: 'expired' };

  if (row.used_at === null) {
    const recent = sql
      .exec<{ n: number }>('SELECT count(*) AS n FROM refresh_tokens WHERE session_id = ? AND created_at > ?', row.session_id, now - 60_000)
      .one().n;
    if (recent > input.maxPerMinute) return { ok: false, reason: 'rate_limited' };
    const current = input.children[0]!;
    sql.exec('UPDATE refresh_tokens SET used_at = ? WHERE id = ?', now, row.id);
    insertToken(sql, {
      id: input.childId,
      session_id: row.session_id,
      secret_hash: current.hash,
      parent_id: row.id,
      created_at: now,
      expires_at: Math.min(now + input.refreshTtlMs, row.session_expires_at),
      used_at: null,
      revoked_at: null,
    });
    sql.exec('UPDATE sessions SET last_seen_at = ? WHERE id = ?', now, row.session_id);
    // Tokens of this family that can no longer be used at all (a reuse of one is as dead as an unknown token).
    sql.exec('DELETE FROM refresh_tokens WHERE session_id = ? AND expires_at <= ?', row.session_id, now);
    return { ok: true, sessionId: row.session_id, childId: input.childId, secret: current.secret };
  }

  // Already used: only the immediate parent of a still-unused child, inside the grace window.
  const child = sql
    .exec<{ secret_hash: string; used_at: number | null; revoked_at: number | null }>(
      'SELECT secret_hash, used_at, revoked_at FROM refresh_tokens WHERE id = ?',
      input.childId,
    )
    .toArray()[0];
  if (now - row.used_at <= input.graceMs && child && child.used_at === null && child.revoked_at === null) {
    // The child was derived with whichever key was current then; a key rotation may have happened since.
    const match = input.children.find((c) => timingSafeEqual(child.secret_hash, c.hash));
    if (match) return { ok: true, sessionId: row.session_id, childId: input.childId, secret: match.secret };
  }
  revokeSession(sql, row.session_id, now);
  return { ok: false, reason: 'reused', sessionId: row.session_id };
}

/** Revokes a session and every refresh token in it; whether it was live. */
export function revokeSession(sql: SqlStorage, sessionId: string, now: number): boolean {
  const changed = sql.exec('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', now, sessionId).rowsWritten > 0;
  sql.exec('UPDATE refresh_tokens SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL', now, sessionId);
  return changed;
}

/** Revokes every session but `except`; the ids revoked. */
export function revokeAll(sql: SqlStorage, now: number, except: string | null = null): string[] {
  const ids = sql
    .exec<{ id: string }>('SELECT id FROM sessions WHERE revoked_at IS NULL AND id IS NOT ?', except)
    .toArray()
    .map((r) => r.id);
  for (const id of ids) revokeSession(sql, id, now);
  return ids;
}

/** The session a refresh token belongs to, when its secret matches (sign-out by refresh cookie). */
export function sessionOfToken(sql: SqlStorage, tokenId: string, secretHash: string): string | null {
  const row = sql.exec<{ session_id: string; secret_hash: string }>('SELECT session_id, secret_hash FROM refresh_tokens WHERE id = ?', tokenId).toArray()[0];
  return row && timingSafeEqual(row.secret_hash, secretHash) ? row.session_id : null;
}

/** A session's end (ms): 0 when revoked, null when this object has no such session. */
export function sessionEnd(sql: SqlStorage, sessionId: string): number | null {
  const row = sql.exec<{ expires_at: number; revoked_at: number | null }>('SELECT expires_at, revoked_at FROM sessions WHERE id = ?', sessionId).toArray()[0];
  if (!row) return null;
  return row.revoked_at !== null ? 0 : row.expires_at;
}

/** Whether a refresh token id is stored here at all (a miss may be a token left in D1 by an older release). */
export function knowsToken(sql: SqlStorage, tokenId: string): boolean {
  return sql.exec('SELECT 1 FROM refresh_tokens WHERE id = ?', tokenId).toArray().length > 0;
}

export interface SessionView {
  id: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  revokedAt: number | null;
  userAgent: string | null;
}

/** The user's sessions, most recently used first (live and recently ended). */
export function listSessions(sql: SqlStorage): SessionView[] {
  return sql
    .exec<SessionRow>('SELECT * FROM sessions ORDER BY last_seen_at DESC LIMIT ?', MAX_SESSIONS * 2)
    .toArray()
    .map((s) => ({ id: s.id, createdAt: s.created_at, lastSeenAt: s.last_seen_at, expiresAt: s.expires_at, revokedAt: s.revoked_at, userAgent: s.user_agent }));
}
