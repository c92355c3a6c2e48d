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
import type { OidcProviderConfig } from '../oidc-providers';
import type { FederatedIdentity } from '../identity-db/store';

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
export async function verifyFederatedToken(
  provider: OidcProviderConfig,
  token: string,
  defaultMaxAgeSeconds: number,
): Promise<(FederatedIdentity & { expiresAt: number }) | null> {
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
