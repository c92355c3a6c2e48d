/**
 * SECURITY.md §7 "Access JWTs": every forged, altered, expired or misdirected token is refused.
 * Each token is presented as a bearer token to an authenticated route (401) and to the
 * session route (no session).
 */
import { env } from 'cloudflare:workers';
import { SignJWT, UnsecuredJWT, base64url, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { ACCESS_AUDIENCE, ACCESS_ISSUER, signAccessToken, signingKeys } from '../../src/auth/tokens';
import { api, apiWithEnv } from '../helpers';
import { PASSWORD, call, signedInUser } from './helpers';

const SECRET = env.OR3_BASIC_AUTH_JWT_SECRET;
const key = new TextEncoder().encode(SECRET);
const kidOf = async (secret: string) => (await signingKeys(secret))[0]!.kid;

async function refused(token: string) {
  const res = await call('GET', '/api/workspaces', { authorization: `Bearer ${token}` });
  expect(res.status).toBe(401);
  expect(await res.json()).toEqual({ error: 'unauthorized', message: 'Authentication required' });
  const session = await call('GET', '/api/auth/session', { authorization: `Bearer ${token}` });
  expect(await session.json()).toMatchObject({ session: null });
}

/** A token like ours, with overridable header and claims, signed with `signKey` (default: ours). */
async function forge(
  user: { id: string },
  sid: string,
  opts: { header?: Record<string, unknown>; claims?: Record<string, unknown>; signKey?: Uint8Array; omit?: string[] } = {},
) {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: ACCESS_ISSUER, aud: ACCESS_AUDIENCE, sub: user.id, sid, ver: 0, iat: now, exp: now + 900, ...opts.claims };
  for (const k of opts.omit ?? []) delete claims[k];
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: await kidOf(SECRET), ...opts.header } as never).sign(opts.signKey ?? key);
}

const sidOf = (token: string) => JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))).sid as string;

describe('access tokens', () => {
  it('accepts a genuine token (control)', async () => {
    const user = await signedInUser();
    expect((await call('GET', '/api/workspaces', user.headers)).status).toBe(200);
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${await forge(user, sidOf(user.accessToken))}` })).status).toBe(200);
  });

  it('refuses alg "none", with and without a signature', async () => {
    const user = await signedInUser();
    const unsigned = new UnsecuredJWT({ sub: user.id, sid: sidOf(user.accessToken), ver: 0, iss: ACCESS_ISSUER, aud: ACCESS_AUDIENCE })
      .setIssuedAt()
      .setExpirationTime('15m')
      .encode();
    await refused(unsigned);
    await refused(unsigned + base64url.encode('signature'));
  });

  it('refuses HS256 signed with another key, including a public key (algorithm confusion)', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    await refused(await forge(user, sid, { signKey: new TextEncoder().encode('x'.repeat(64)) }));
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    await refused(await forge(user, sid, { signKey: new TextEncoder().encode(JSON.stringify(jwk)) }));
  });

  it('refuses algorithms outside the pin', async () => {
    const user = await signedInUser();
    const { privateKey } = await generateKeyPair('RS384');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sid: sidOf(user.accessToken), ver: 0 })
      .setProtectedHeader({ alg: 'RS384', typ: 'at+jwt', kid: await kidOf(SECRET) })
      .setIssuer(ACCESS_ISSUER)
      .setAudience(ACCESS_AUDIENCE)
      .setSubject(user.id)
      .setIssuedAt(now)
      .setExpirationTime(now + 900)
      .sign(privateKey);
    await refused(token);
    await refused(await forge(user, sidOf(user.accessToken), { header: { alg: 'HS512' }, signKey: key }).catch(() => 'x.y.z'));
  });

  it('refuses a flipped signature bit and an edited payload', async () => {
    const user = await signedInUser();
    const [h, p, s] = user.accessToken.split('.') as [string, string, string];
    const sig = base64url.decode(s);
    sig[0]! ^= 1;
    await refused(`${h}.${p}.${base64url.encode(sig)}`);
    const other = await signedInUser();
    const payload = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
    payload.sub = other.id;
    await refused(`${h}.${base64url.encode(JSON.stringify(payload))}.${s}`);
  });

  it('refuses expired, not-yet-valid and too-old tokens', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    const now = Math.floor(Date.now() / 1000);
    await refused(await forge(user, sid, { claims: { iat: now - 1000, exp: now - 6 } }));
    await refused(await forge(user, sid, { claims: { nbf: now + 120 } }));
    await refused(await forge(user, sid, { claims: { iat: now - 3 * 3600, exp: now + 600 } }));
  });

  it('refuses a long-lived token signed with the real secret: exp − iat over the access TTL plus 60 s skew', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    const now = Math.floor(Date.now() / 1000);
    await refused(await forge(user, sid, { claims: { iat: now, exp: now + 10 * 365 * 86400 } }));
    await refused(await forge(user, sid, { claims: { iat: now, exp: now + 900 + 61 } }));
    expect(
      (await call('GET', '/api/workspaces', { authorization: `Bearer ${await forge(user, sid, { claims: { iat: now, exp: now + 900 + 60 } })}` })).status,
    ).toBe(200);
    // The bound follows the configured TTL.
    const hour = await forge(user, sid, { claims: { iat: now, exp: now + 3600 } });
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${hour}` })).status).toBe(401);
    expect((await apiWithEnv({ OR3_BASIC_AUTH_ACCESS_TTL_SECONDS: '3600' }, '/api/workspaces', { headers: { authorization: `Bearer ${hour}` } })).status).toBe(
      200,
    );
  });

  it('refuses a wrong or missing audience and a wrong issuer', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    await refused(await forge(user, sid, { claims: { aud: 'someone-else' } }));
    await refused(await forge(user, sid, { claims: { aud: ['a', 'b'] } }));
    await refused(await forge(user, sid, { omit: ['aud'] }));
    await refused(await forge(user, sid, { claims: { iss: 'https://evil.example.net' } }));
  });

  it('refuses the wrong typ, a missing sid, and a refresh token used as an access token', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    await refused(await forge(user, sid, { header: { typ: 'JWT' } }));
    await refused(await forge(user, sid, { omit: ['sid'] }));
    await refused(user.refreshToken);
  });

  it('refuses unknown and hostile kids, and never follows jku or x5u', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    await refused(await forge(user, sid, { header: { kid: 'nope' } }));
    await refused(await forge(user, sid, { header: { kid: "' OR 1=1 --" } }));
    await refused(await forge(user, sid, { header: { kid: '../../etc/passwd' } }));
    // jku/x5u are ignored: the token is judged by our own key only, so with our key it passes.
    const withJku = await forge(user, sid, { header: { jku: 'https://evil.example.net/jwks', x5u: 'https://evil.example.net/cert' } });
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${withJku}` })).status).toBe(200);
  });

  it('refuses a token whose session was signed out', async () => {
    const user = await signedInUser();
    expect((await call('POST', '/api/basic-auth/sign-out', user.headers)).status).toBe(200);
    await refused(user.accessToken);
  });

  it('refuses a token with an old version after a password change', async () => {
    const user = await signedInUser();
    const res = await call(
      'POST',
      '/api/basic-auth/change-password',
      { ...user.headers, 'x-or3-token-transport': 'bearer' },
      {
        currentPassword: PASSWORD,
        newPassword: 'a brand new password',
        confirmNewPassword: 'a brand new password',
      },
    );
    expect(res.status).toBe(200);
    await refused(user.accessToken);
    const { accessToken } = await res.json<{ accessToken: string }>();
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${accessToken}` })).status).toBe(200);
  });

  it('accepts tokens signed with the previous secret during rotation, and only then', async () => {
    const user = await signedInUser();
    const sid = sidOf(user.accessToken);
    const newSecret = 'rotated-secret-0123456789abcdef0123456789abcdef';
    const rotated = { OR3_BASIC_AUTH_JWT_SECRET: newSecret, OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS: SECRET };
    // A token signed with the old (now previous) secret still works…
    expect((await apiWithEnv(rotated, '/api/workspaces', { headers: user.headers })).status).toBe(200);
    // …new tokens are signed with the new secret…
    const { token } = await signAccessToken(await signingKeys(newSecret), { sub: user.id, sid, ver: 0 }, 900);
    expect((await apiWithEnv(rotated, '/api/workspaces', { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // …and once the previous secret is retired, old tokens stop working.
    expect((await apiWithEnv({ OR3_BASIC_AUTH_JWT_SECRET: newSecret }, '/api/workspaces', { headers: user.headers })).status).toBe(401);
  });

  it('treats garbage in Authorization as unauthenticated, not as an error', async () => {
    for (const value of ['Bearer', 'Bearer a.b', 'Basic dXNlcjpwYXNz', 'Bearer ' + 'x'.repeat(5000)]) {
      const res = await api('/api/workspaces', { headers: { authorization: value } });
      expect(res.status, value.slice(0, 20)).toBe(401);
    }
  });
});
