/**
 * The format of OR3_AUTH_OIDC_PROVIDERS (docs/configuration.md, docs/auth.md): one entry per
 * federated identity provider, and what makes a list of them unsafe to serve. config.ts reads
 * the variable through this schema at startup; auth/oidc.ts verifies tokens against the entries.
 */
import * as z from 'zod';

export const GITHUB_ACTIONS_ISSUER = 'https://token.actions.githubusercontent.com';

const JWS_ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Bounds for the oldest federated token accepted (seconds): a minute … a year. */
export const TOKEN_AGE_SECONDS = { min: 60, max: 31_536_000 } as const;

const listOf = (v: string | string[]) => (Array.isArray(v) ? v : [v]);

/** One provider. */
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
