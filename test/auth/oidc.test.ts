/** SECURITY.md §7 "Federated identity": providers from OR3_AUTH_OIDC_PROVIDERS, verified with jose. */
import { env } from 'cloudflare:workers';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiWithEnv } from '../helpers';
import { makeUser } from './helpers';

const ISSUER = 'https://clerk.example.com';
const OTHER_ISSUER = 'https://token.actions.githubusercontent.com';
let privateKey: CryptoKey;
let otherKey: CryptoKey;
let vars: Record<string, string>;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('ES256', { extractable: true });
  privateKey = pair.privateKey;
  otherKey = other.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
  const otherJwk = { ...(await exportJWK(other.publicKey)), kid: 'g1', alg: 'ES256' };
  vars = {
    OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([
      { id: 'clerk', issuer: ISSUER, audience: 'or3', jwks: { keys: [jwk] }, authorizedParties: ['https://app.example.com'] },
      { id: 'github', issuer: OTHER_ISSUER, audience: 'or3-ci', algorithms: ['ES256'], jwks: { keys: [otherJwk] }, claims: { repository_owner_id: ['42'] } },
    ]),
  };
});

async function token(
  opts: {
    sub?: string;
    iss?: string;
    aud?: string;
    azp?: string | null;
    exp?: number;
    iat?: number | null;
    key?: CryptoKey;
    alg?: string;
    kid?: string;
    email?: string;
    extra?: Record<string, unknown>;
  } = {},
) {
  const claims: Record<string, unknown> = {
    email: opts.email ?? 'fed@example.com',
    email_verified: true,
    name: 'Fed User',
    repository_owner_id: 42,
    ...opts.extra,
  };
  if (opts.azp !== null) claims.azp = opts.azp ?? 'https://app.example.com';
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? 'k1' })
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? 'or3')
    .setSubject(opts.sub ?? `user_${crypto.randomUUID()}`)
    .setExpirationTime(opts.exp ?? Math.floor(Date.now() / 1000) + 300);
  if (opts.iat !== null) jwt.setIssuedAt(opts.iat);
  return jwt.sign(opts.key ?? privateKey);
}

const session = async (jwt: string, overrides: Record<string, string> = {}, header = 'authorization') =>
  (await apiWithEnv({ ...vars, ...overrides }, '/api/auth/session', { headers: { [header]: header === 'authorization' ? `Bearer ${jwt}` : jwt } })).json<any>();

describe('federated identity (OIDC)', () => {
  it('signs in a configured provider user, provisioning user and workspace', async () => {
    const sub = `user_${crypto.randomUUID()}`;
    const { session: s } = await session(await token({ sub }));
    expect(s).toMatchObject({
      authenticated: true,
      provider: 'clerk',
      providerUserId: sub,
      user: { email: 'fed@example.com', displayName: 'Fed User' },
      role: 'owner',
    });
    expect(s.workspace.name).toBe('My Workspace');
    const again = await session(await token({ sub }));
    expect(again.session.user.id).toBe(s.user.id);
  });

  it('10 concurrent first requests of one identity create exactly one user and one workspace', async () => {
    const sub = `user_${crypto.randomUUID()}`;
    const jwt = await token({ sub });
    const results = await Promise.all(Array.from({ length: 10 }, () => session(jwt)));
    expect(new Set(results.map((r) => r.session.user.id)).size).toBe(1);
    expect(new Set(results.map((r) => r.session.workspace.id)).size).toBe(1);
    const { n } = (await env.DB.prepare("SELECT count(*) AS n FROM identities WHERE provider = 'clerk' AND subject = ?").bind(sub).first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('accepts Cloudflare Access style tokens in Cf-Access-Jwt-Assertion', async () => {
    const { session: s } = await session(await token(), {}, 'cf-access-jwt-assertion');
    expect(s.provider).toBe('clerk');
  });

  it('refuses an unconfigured issuer, a wrong audience, an expired token and a foreign key', async () => {
    expect((await session(await token({ iss: 'https://unknown.example.com' }))).session).toBeNull();
    expect((await session(await token({ aud: 'someone-else' }))).session).toBeNull();
    expect((await session(await token({ exp: Math.floor(Date.now() / 1000) - 60 }))).session).toBeNull();
    const { privateKey: stranger } = await generateKeyPair('RS256');
    expect((await session(await token({ key: stranger }))).session).toBeNull();
  });

  it('pins each provider to its algorithms (an RS256 token for an ES256 provider is refused)', async () => {
    expect((await session(await token({ iss: OTHER_ISSUER, aud: 'or3-ci', key: otherKey, alg: 'ES256', kid: 'g1' }))).session?.provider).toBe('github');
    expect((await session(await token({ iss: OTHER_ISSUER, aud: 'or3-ci' }))).session).toBeNull();
  });

  it('refuses an HS256 token keyed with the provider public key (algorithm confusion)', async () => {
    const jwk = JSON.parse(vars.OR3_AUTH_OIDC_PROVIDERS!)[0].jwks.keys[0];
    const hs = await new SignJWT({ azp: 'https://app.example.com' })
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience('or3')
      .setSubject('attacker')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JSON.stringify(jwk)));
    expect((await session(hs)).session).toBeNull();
  });

  it("checks Clerk's authorized parties", async () => {
    expect((await session(await token({ azp: 'https://evil.example.net' }))).session).toBeNull();
    expect((await session(await token({ azp: null }))).session).toBeNull();
  });

  it('does not create unknown users when auto-provisioning is off, but still signs in known ones', async () => {
    const known = `user_${crypto.randomUUID()}`;
    await session(await token({ sub: known }));
    const off = { OR3_AUTH_AUTO_PROVISION: 'false' };
    expect((await session(await token({ sub: known }), off)).session?.providerUserId).toBe(known);
    const stranger = `user_${crypto.randomUUID()}`;
    expect((await session(await token({ sub: stranger }), off)).session).toBeNull();
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM identities WHERE subject = ?').bind(stranger).first<{ n: number }>())!;
    expect(n).toBe(0);
  });

  it('maps the same sub from two issuers to two users', async () => {
    const sub = `shared_${crypto.randomUUID()}`;
    const a = await session(await token({ sub }));
    const b = await session(await token({ sub, iss: OTHER_ISSUER, aud: 'or3-ci', key: otherKey, alg: 'ES256', kid: 'g1' }));
    expect(a.session.user.id).not.toBe(b.session.user.id);
  });

  it('enforces exact claim values (GitHub repository owner), numbers compared as strings', async () => {
    const github = (owner: unknown) =>
      token({ iss: OTHER_ISSUER, aud: 'or3-ci', key: otherKey, alg: 'ES256', kid: 'g1', extra: { repository_owner_id: owner } });
    expect((await session(await github(42))).session?.provider).toBe('github');
    expect((await session(await github('42'))).session?.provider).toBe('github');
    expect((await session(await github(43))).session).toBeNull();
    expect((await session(await github(undefined))).session).toBeNull();
  });

  it('enforces required claims (Clerk session tokens carry sid; template tokens do not)', async () => {
    const providers = JSON.parse(vars.OR3_AUTH_OIDC_PROVIDERS!);
    providers[0].requiredClaims = ['sid'];
    const strict = { OR3_AUTH_OIDC_PROVIDERS: JSON.stringify(providers) };
    expect((await session(await token(), strict)).session).toBeNull();
    expect((await session(await token({ extra: { sid: 'sess_123' } }), strict)).session?.provider).toBe('clerk');
  });

  it('refuses a token issued longer ago than the maximum age (default 24 h), or without iat; a provider may opt out', async () => {
    const now = Math.floor(Date.now() / 1000);
    const longLived = now + 10 * 365 * 86400;
    expect((await session(await token({ iat: now - 2 * 86400, exp: longLived }))).session).toBeNull();
    expect((await session(await token({ iat: null }))).session).toBeNull();
    expect((await session(await token({ iat: now - 23 * 3600, exp: longLived }))).session?.provider).toBe('clerk');
    // The deployment default is configurable…
    expect((await session(await token({ iat: now - 2 * 3600 }), { OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS: '3600' })).session).toBeNull();
    // …and a provider may set its own bound, or none at all with 0.
    const providers = JSON.parse(vars.OR3_AUTH_OIDC_PROVIDERS!);
    const withAge = (maxTokenAgeSeconds: number) => ({ OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([{ ...providers[0], maxTokenAgeSeconds }]) });
    expect((await session(await token({ iat: now - 2 * 3600 }), withAge(3600))).session).toBeNull();
    expect((await session(await token({ iat: now - 2 * 86400, exp: longLived }), withAge(7 * 86400))).session?.provider).toBe('clerk');
    expect((await session(await token({ iat: now - 30 * 86400, exp: longLived }), withAge(0))).session?.provider).toBe('clerk');
    expect((await session(await token({ iat: null }), withAge(0))).session?.provider).toBe('clerk');
  });

  it('shows only an email the IdP says it verified', async () => {
    const { session: s } = await session(await token({ email: 'ceo@example.com', extra: { email_verified: false } }));
    expect(s.user.email).toBeUndefined();
  });

  it('never links a federated identity to an existing account by email', async () => {
    const existing = await makeUser();
    const { session: s } = await session(await token({ email: existing.email }));
    expect(s.user.id).not.toBe(existing.id);
  });
});
