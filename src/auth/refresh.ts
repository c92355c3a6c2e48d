/**
 * Refresh-token rotation as one step shared by `POST /api/basic-auth/refresh` and the
 * transparent refresh of cookie requests (docs/auth.md "Transparent refresh"): the same rules,
 * grace window and reuse detection on both paths, so a browser whose access cookie expired is
 * served as if it had called /refresh first.
 */
import type { Context } from 'hono';
import { audit } from '../audit/emit';
import type { AppEnv } from '../env';
import { clientIp } from '../http/rate-limit';
import { rateLimited } from '../errors';
import { legacyTokenOwner } from '../user-db/legacy';
import { parseRefreshToken } from '../user-db/tokens';
import { signAccessToken, signingKeys } from './tokens';

export interface Rotated {
  userId: string;
  sessionId: string;
  tokenVersion: number;
  refreshToken: string;
}

/**
 * Rotates `token` in its user's object (src/user-db/): no D1 query, except one read of the owner
 * of a token issued before sessions moved there. Null when it is invalid, revoked, expired or
 * reused; reuse has already revoked the session family and closed its sockets in the object,
 * and is audited here. A genuine token whose session already rotated
 * REFRESH_ROTATIONS_PER_MINUTE times in the last minute is refused with 429 (concurrent requests
 * inside the grace window count once).
 */
export async function rotate(c: Context<AppEnv>, token: string): Promise<Rotated | null> {
  const { auth } = c.get('config');
  const parsed = parseRefreshToken(token);
  if (!parsed) return null;
  const userId = parsed.userId ?? (await legacyTokenOwner(c.env.DB, parsed.id));
  if (!userId) return null;
  const result = await c.env.USER_DB.getByName(userId).rotate({
    tokenId: parsed.id,
    secret: parsed.secret,
    serverKeys: auth.jwtSecretPrevious ? [auth.jwtSecret, auth.jwtSecretPrevious] : [auth.jwtSecret],
    refreshTtlMs: auth.refreshTtlSeconds * 1000,
    graceMs: auth.rotationGraceMs,
    legacy: !parsed.userId,
  });
  if (result.ok) return { userId, sessionId: result.sessionId, tokenVersion: result.tokenVersion, refreshToken: result.refreshToken };
  if (result.reason === 'rate_limited') throw rateLimited(60);
  if (result.reason === 'reused') audit(c, 'auth.refresh.reuse_detected', { ip: clientIp(c), targetUserId: userId });
  return null;
}

/** A fresh access token for a session at the user's current token version. */
export async function issueAccessToken(c: Context<AppEnv>, claims: { userId: string; sessionId: string; tokenVersion: number }) {
  const { auth } = c.get('config');
  return signAccessToken(
    await signingKeys(auth.jwtSecret, auth.jwtSecretPrevious),
    { sub: claims.userId, sid: claims.sessionId, ver: claims.tokenVersion },
    auth.accessTtlSeconds,
  );
}
