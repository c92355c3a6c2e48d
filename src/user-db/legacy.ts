/**
 * The user object's D1 reads (docs/architecture.md "Sessions live with their user"): once in the
 * object's life, the user's facts and the sessions and refresh tokens an earlier release kept in
 * D1 (moved here so nobody is signed out by the upgrade: a token issued before keeps working);
 * afterwards only the facts, when a write path says they changed. The moved D1 sessions are
 * marked revoked there, so nothing could ever honour them in two places.
 */
import type { FactsRow } from './facts';
import type { SessionRow, TokenRow } from './sessions';

const FACTS_COLUMNS = 'token_version, disabled_at, is_admin, email, display_name, active_workspace_id';

/** Bounds for the one-time move: far above any real user's live sessions and refresh tokens. */
const MAX_LEGACY_SESSIONS = 1_000;
const MAX_LEGACY_TOKENS = 20_000;

export async function readFactsRow(db: D1Database, userId: string): Promise<FactsRow> {
  return db.prepare(`SELECT ${FACTS_COLUMNS} FROM users WHERE id = ?`).bind(userId).first<NonNullable<FactsRow>>();
}

export interface LegacyImport {
  facts: FactsRow;
  sessions: SessionRow[];
  tokens: TokenRow[];
}

/** The user's facts and their live D1 sessions with those sessions' unexpired refresh tokens, in one batch. */
export async function readLegacy(db: D1Database, userId: string, now: number): Promise<LegacyImport> {
  const [user, sessions, tokens] = await db.batch([
    db.prepare(`SELECT ${FACTS_COLUMNS} FROM users WHERE id = ?`).bind(userId),
    db
      .prepare(
        'SELECT id, created_at, expires_at, last_seen_at, revoked_at, user_agent FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? LIMIT ?',
      )
      .bind(userId, now, MAX_LEGACY_SESSIONS),
    db
      .prepare(
        `SELECT r.id, r.session_id, r.secret_hash, r.parent_id, r.created_at, r.expires_at, r.used_at, r.revoked_at
           FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
          WHERE s.user_id = ? AND s.revoked_at IS NULL AND s.expires_at > ? AND r.expires_at > ? LIMIT ?`,
      )
      .bind(userId, now, now, MAX_LEGACY_TOKENS),
  ]);
  return {
    facts: (user?.results[0] as NonNullable<FactsRow> | undefined) ?? null,
    sessions: (sessions?.results ?? []) as SessionRow[],
    tokens: (tokens?.results ?? []) as TokenRow[],
  };
}

/** Marks the moved sessions revoked in D1 (only those: one made meanwhile by an older isolate is left for its own move). */
export async function markMoved(db: D1Database, sessionIds: string[], now: number): Promise<void> {
  if (!sessionIds.length) return;
  await db
    .prepare('UPDATE sessions SET revoked_at = ?1 WHERE revoked_at IS NULL AND id IN (SELECT value FROM json_each(?2))')
    .bind(now, JSON.stringify(sessionIds))
    .run();
}

/** The owner of a refresh token issued before the move (its token carries no user id); one D1 read, for such tokens only. */
export async function legacyTokenOwner(db: D1Database, tokenId: string): Promise<string | null> {
  return (await db.prepare('SELECT user_id FROM refresh_tokens WHERE id = ?').bind(tokenId).first<{ user_id: string }>())?.user_id ?? null;
}
