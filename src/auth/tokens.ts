/**
 * Access tokens (refresh tokens: src/user-db/tokens.ts, with the sessions they belong to).
 *
 * Access token: a JWT signed HS256 (the algorithm is pinned on verify; OR3's cookies are HS256),
 * header `typ: at+jwt` and `kid`, claims `iss`, `aud`, `sub` (user id), `sid` (session id),
 * `ver` (the user's token version), `iat`, `exp`. The `kid` is derived from the key itself, so
 * rotating `OR3_BASIC_AUTH_JWT_SECRET` (old value moved to `…_PREVIOUS`) needs no other change:
 * tokens signed with either verify until they expire.
 */
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { keyring } from '../crypto';

export const ACCESS_ISSUER = 'or3-edge';
export const ACCESS_AUDIENCE = 'or3-edge:access';
export const ACCESS_TYP = 'at+jwt';

const encoder = new TextEncoder();

export interface SigningKey {
  kid: string;
  key: Uint8Array;
}

/** The access-token keys, current first; kid = first 16 hex chars of SHA-256("kid:" + secret). */
export async function signingKeys(current: string, previous?: string): Promise<SigningKey[]> {
  return (await keyring('kid', 16, current, previous)).map(({ kid, secret }) => ({ kid, key: encoder.encode(secret) }));
}

export interface AccessClaims {
  sub: string;
  sid: string;
  ver: number;
}

export async function signAccessToken(keys: SigningKey[], claims: AccessClaims, ttlSeconds: number, now = Date.now()) {
  const signing = keys[0]!;
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSeconds;
  const token = await new SignJWT({ sid: claims.sid, ver: claims.ver })
    .setProtectedHeader({ alg: 'HS256', typ: ACCESS_TYP, kid: signing.kid })
    .setIssuer(ACCESS_ISSUER)
    .setAudience(ACCESS_AUDIENCE)
    .setSubject(claims.sub)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(signing.key);
  return { token, expiresAt: exp * 1000 };
}

/**
 * How much longer than the configured TTL a token's `exp − iat` may be. Ours are exactly the TTL;
 * the slack covers a TTL lowered while tokens are live, not a token that was minted to last.
 */
export const ACCESS_LIFETIME_SKEW_SECONDS = 60;

/** Verified access-token claims, or null for any invalid token (the reason never reaches the client). */
export async function verifyAccessToken(keys: SigningKey[], token: string, ttlSeconds: number): Promise<(AccessClaims & { exp: number }) | null> {
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        const match = keys.find((k) => k.kid === header.kid);
        if (!match) throw new joseErrors.JWKSNoMatchingKey();
        return match.key;
      },
      {
        algorithms: ['HS256'],
        issuer: ACCESS_ISSUER,
        audience: ACCESS_AUDIENCE,
        typ: ACCESS_TYP,
        requiredClaims: ['sub', 'sid', 'ver', 'iat', 'exp'],
        maxTokenAge: ttlSeconds + ACCESS_LIFETIME_SKEW_SECONDS,
        clockTolerance: 5,
      },
    );
    // `maxTokenAge` bounds how old `iat` is, not how far `exp` lies beyond it: a token signed with
    // the real secret (a leaked key, a bug) could otherwise carry a 10-year `exp`.
    if (typeof payload.iat !== 'number' || typeof payload.exp !== 'number' || payload.exp - payload.iat > ttlSeconds + ACCESS_LIFETIME_SKEW_SECONDS)
      return null;
    return claimsOf(payload);
  } catch {
    return null;
  }
}

function claimsOf(payload: JWTPayload): (AccessClaims & { exp: number }) | null {
  const { sub, sid, ver, exp } = payload as JWTPayload & { sid?: unknown; ver?: unknown };
  if (typeof sub !== 'string' || typeof sid !== 'string' || typeof ver !== 'number' || !Number.isInteger(ver) || typeof exp !== 'number') {
    return null;
  }
  return { sub, sid, ver, exp };
}
