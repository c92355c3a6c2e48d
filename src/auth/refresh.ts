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
import { closeSessionSockets } from '../sync/sockets';
import { rotateRefreshToken } from './sessions';
import { signAccessToken, signingKeys } from './tokens';

export interface Rotated {
  userId: string;
  sessionId: string;
  tokenVersion: number;
  refreshToken: string;
}

/**
 * Rotates `token`; null when it is invalid, revoked, expired or reused. Reuse has already
 * revoked the session family in the store; here it is audited and the family's sockets closed.
 * A genuine token whose session already rotated REFRESH_ROTATIONS_PER_MINUTE times in the last
 * minute is refused with 429 (sessions.ts; concurrent requests inside the grace window count once).
 */
export async function rotate(c: Context<AppEnv>, token: string): Promise<Rotated | null> {
  const { auth } = c.get('config');
  const serverKeys = auth.jwtSecretPrevious ? [auth.jwtSecret, auth.jwtSecretPrevious] : [auth.jwtSecret];
  const result = await rotateRefreshToken(c.env.DB, serverKeys, token, auth.refreshTtlSeconds * 1000, auth.rotationGraceMs, Date.now());
  if (result.ok) return result;
  if (result.reason === 'rate_limited') throw rateLimited(60);
  if (result.reason === 'reused') {
    audit(c, 'auth.refresh.reuse_detected', { ip: clientIp(c), targetUserId: result.userId });
    await closeSessionSockets(c.env, { userId: result.userId, sessionId: result.sessionId });
  }
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
