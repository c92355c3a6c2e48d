/**
 * Federated identity: verifying JWTs from configured OIDC providers (Clerk, Cloudflare Access,
 * GitHub Actions OIDC, any issuer with a JWKS).
 *
 * The provider is chosen by the token's unverified `iss`, then everything is checked against
 * that provider only: signature with its keys, its pinned algorithms, exact issuer, audience,
 * expiry, token age (`iat`, see `maxTokenAgeFor`), then the provider's claim rules (Clerk's
 * `azp`, required claims such as `sid`, exact values such as GitHub's `repository_owner_id`).
 * `jku`/`x5u` headers are never followed; keys come
 * only from the configured JWKS URL (jose caches it and refetches an unknown `kid` at most once
 * per 30 s cooldown) or from inline keys.
 */
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JWTVerifyGetKey } from 'jose';
import * as z from 'zod';
import type { FederatedIdentity } from './store';

export const GITHUB_ACTIONS_ISSUER = 'https://token.actions.githubusercontent.com';

const JWS_ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Bounds for the oldest federated token accepted (seconds): a minute … a year. */
export const TOKEN_AGE_SECONDS = { min: 60, max: 31_536_000 } as const;

const listOf = (v: string | string[]) => (Array.isArray(v) ? v : [v]);

/** One entry of OR3_AUTH_OIDC_PROVIDERS (docs/configuration.md, docs/auth.md). */
export const oidcProviderSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'id must be lowercase letters, digits, - or _'),
    issuer: z.url({ message: 'issuer must be a URL' }),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform(listOf),
    algorithms: z.array(z.enum(JWS_ASYMMETRIC_ALGORITHMS)).min(1).default(['RS256']),
    jwksUrl: z.url({ message: 'jwksUrl must be a URL' }).optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    /** Clerk's `azp` allow-list: when set, a token's `azp` must be one of these origins. */
    authorizedParties: z.array(z.string().min(1)).optional(),
    /** Claims that must be present (e.g. Clerk's `sid`, which template tokens lack). */
    requiredClaims: z.array(z.string().min(1)).optional(),
    /** Claims that must equal one of the given values (e.g. GitHub's `repository_owner_id`). */
    claims: z
      .record(z.string().min(1), z.union([z.string(), z.array(z.string()).min(1)]))
      .transform((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, listOf(v)])))
      .optional(),
    /**
     * The oldest `iat` accepted, in seconds: unset → OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS; `0` → no
     * bound for this provider (then a token without `iat` is accepted too).
     */
    maxTokenAgeSeconds: z
      .number()
      .int()
      .refine(
        (n) => n === 0 || (n >= TOKEN_AGE_SECONDS.min && n <= TOKEN_AGE_SECONDS.max),
        `maxTokenAgeSeconds must be 0 (no bound) or ${TOKEN_AGE_SECONDS.min} … ${TOKEN_AGE_SECONDS.max}`,
      )
      .optional(),
  })
  .refine((p) => (p.jwksUrl === undefined) !== (p.jwks === undefined), { message: 'each provider needs exactly one of jwksUrl or jwks' });

export type OidcProviderConfig = z.output<typeof oidcProviderSchema>;

/**
 * What makes a list of well-formed providers unsafe: ids that are not unique, and in production a
 * key set fetched over plain http or a GitHub Actions provider without a claim rule.
 */
export function providerListProblems(providers: OidcProviderConfig[], production: boolean): string[] {
  const problems: string[] = [];
  for (const p of production ? providers : []) {
    if (p.jwksUrl && !p.jwksUrl.startsWith('https://')) problems.push(`provider "${p.id}" jwksUrl must use https in production`);
    // Any workflow on GitHub can mint a token for any audience: without a claim rule every
    // GitHub repository could sign in.
    if (p.issuer === GITHUB_ACTIONS_ISSUER && !Object.keys(p.claims ?? {}).length) {
      problems.push(`provider "${p.id}" (GitHub Actions) needs "claims", e.g. {"repository_owner_id": "<your org id>"}`);
    }
  }
  if (new Set(providers.map((p) => p.id)).size !== providers.length) problems.push('provider ids must be unique');
  return problems;
}

const keySets = new Map<string, JWTVerifyGetKey>();

function keySetFor(provider: OidcProviderConfig): JWTVerifyGetKey {
  const cacheKey = `${provider.id}|${provider.jwksUrl ?? JSON.stringify(provider.jwks)}`;
  let keys = keySets.get(cacheKey);
  if (!keys) {
    keys = provider.jwksUrl
      ? createRemoteJWKSet(new URL(provider.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000, timeoutDuration: 5_000 })
      : (createLocalJWKSet(provider.jwks as Parameters<typeof createLocalJWKSet>[0]) as JWTVerifyGetKey);
    keySets.set(cacheKey, keys);
  }
  return keys;
}

/** The unverified issuer of a JWT, or null if it is not a JWT at all. */
export function unverifiedIssuer(token: string): string | null {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss : null;
  } catch {
    return null;
  }
}

export function providerForIssuer(providers: OidcProviderConfig[], issuer: string | null): OidcProviderConfig | undefined {
  if (issuer === null) return undefined;
  return providers.find((p) => p.issuer === issuer);
}

/** The provider's extra rules: authorized parties (`azp`), required claims, exact claim values. */
export function claimRulesHold(provider: OidcProviderConfig, claims: Record<string, unknown>): boolean {
  if (provider.authorizedParties && !provider.authorizedParties.includes(String(claims.azp ?? ''))) return false;
  for (const name of provider.requiredClaims ?? []) {
    if (claims[name] === undefined || claims[name] === null || claims[name] === '') return false;
  }
  for (const [name, allowed] of Object.entries(provider.claims ?? {})) {
    const value = claims[name];
    if ((typeof value !== 'string' && typeof value !== 'number') || !allowed.includes(String(value))) return false;
  }
  return true;
}

/**
 * The oldest `iat` accepted from `provider` (seconds), or null for no bound: the provider's own
 * `maxTokenAgeSeconds` (0 = opted out), else the deployment default.
 */
export function maxTokenAgeFor(provider: OidcProviderConfig, defaultSeconds: number): number | null {
  const seconds = provider.maxTokenAgeSeconds ?? defaultSeconds;
  return seconds > 0 ? seconds : null;
}

/**
 * Verifies an external token against one provider; null when it does not verify. A bounded age
 * means `iat` is required and may be at most that old (or in the future by the clock tolerance):
 * an IdP's token with a far `exp` is not honoured forever.
 */
export async function verifyFederatedToken(provider: OidcProviderConfig, token: string, defaultMaxAgeSeconds: number): Promise<(FederatedIdentity & { expiresAt: number }) | null> {
  const maxAge = maxTokenAgeFor(provider, defaultMaxAgeSeconds);
  try {
    const { payload } = await jwtVerify(token, keySetFor(provider), {
      algorithms: provider.algorithms,
      issuer: provider.issuer,
      audience: provider.audience,
      requiredClaims: maxAge === null ? ['sub', 'exp'] : ['sub', 'exp', 'iat'],
      ...(maxAge === null ? {} : { maxTokenAge: maxAge }),
      clockTolerance: 5,
    });
    const claims = payload as Record<string, unknown>;
    if (!claimRulesHold(provider, claims)) return null;
    // Only an address the IdP says it verified is shown; it is never used to link accounts.
    const verified = claims.email_verified === true || claims.email_verified === 'true';
    const email = verified && typeof claims.email === 'string' ? claims.email : null;
    const name = typeof claims.name === 'string' ? claims.name : typeof claims.preferred_username === 'string' ? claims.preferred_username : null;
    return {
      provider: provider.id,
      issuer: provider.issuer,
      subject: payload.sub!,
      email,
      displayName: name,
      expiresAt: payload.exp! * 1000,
    };
  } catch {
    return null;
  }
}
