/**
 * Access tokens and refresh-token secrets.
 *
 * Access token: a JWT signed HS256 (the algorithm is pinned on verify; OR3's cookies are HS256),
 * header `typ: at+jwt` and `kid`, claims `iss`, `aud`, `sub` (user id), `sid` (session id),
 * `ver` (the user's token version), `iat`, `exp`. The `kid` is derived from the key itself, so
 * rotating `OR3_BASIC_AUTH_JWT_SECRET` (old value moved to `…_PREVIOUS`) needs no other change:
 * tokens signed with either verify until they expire.
 *
 * Refresh token: opaque `<id>.<secret>`; only SHA-256(secret) is stored. A rotated token's child
 * secret is derived from the parent's secret with an HMAC, so a refresh retried inside the grace
 * window (two tabs, a lost response) gets the very same child without the server keeping any
 * plaintext.
 */
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';

export const ACCESS_ISSUER = 'or3-edge';
export const ACCESS_AUDIENCE = 'or3-edge:access';
export const ACCESS_TYP = 'at+jwt';

const encoder = new TextEncoder();

export interface SigningKey {
  kid: string;
  key: Uint8Array;
}

export async function sha256Hex(input: string | Uint8Array): Promise<string> {
  const bytes = typeof input === 'string' ? encoder.encode(input) : input;
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function randomToken(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** kid = first 16 hex chars of SHA-256("kid:" + secret): stable per secret, reveals nothing useful. */
export async function signingKeys(current: string, previous?: string): Promise<SigningKey[]> {
  const keys: SigningKey[] = [];
  for (const secret of previous ? [current, previous] : [current]) {
    keys.push({ kid: (await sha256Hex(`kid:${secret}`)).slice(0, 16), key: encoder.encode(secret) });
  }
  return keys;
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
    if (typeof payload.iat !== 'number' || typeof payload.exp !== 'number' || payload.exp - payload.iat > ttlSeconds + ACCESS_LIFETIME_SKEW_SECONDS) return null;
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

/** Splits `<id>.<secret>`; null for anything malformed. */
export function parseRefreshToken(token: string): { id: string; secret: string } | null {
  const match = /^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})$/.exec(token);
  return match ? { id: match[1]!, secret: match[2]! } : null;
}

/** HMAC-SHA256 of `data` under `key`, base64url: the MAC behind every signed token and URL here. */
export async function hmacBase64url(key: string, data: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey('raw', encoder.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return base64url(new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, encoder.encode(data))));
}

/** The child refresh secret for a parent: HMAC(server key, parent id + parent secret). */
export function childSecret(serverKey: string, parentId: string, parentSecret: string): Promise<string> {
  return hmacBase64url(`refresh-child:${serverKey}`, `${parentId}.${parentSecret}`);
}

/** Constant-time comparison of two strings (digests, MACs); unequal lengths are simply unequal. */
export function digestsEqual(a: string, b: string): boolean {
  const ab = encoder.encode(a);
  const bb = encoder.encode(b);
  if (ab.byteLength !== bb.byteLength) return false;
  return crypto.subtle.timingSafeEqual(ab, bb);
}
