/**
 * Configuration: every variable from ARCHITECTURE.md parsed and validated once per isolate.
 *
 * Production fails closed: a missing or weak secret, a wildcard CORS origin or any malformed
 * value makes `loadConfig` return problems, and the config middleware answers every request
 * with 503 `misconfigured` plus a log line naming the variable and how to set it.
 * Development (`npm run dev` passes `--var ENVIRONMENT:development`) runs with no secrets at
 * all: clearly labelled, fixed dev secrets stand in for missing ones.
 */
import * as z from 'zod';
import type { Bindings } from './env';

/** Secrets must carry at least 256 bits; RFC 8725 §3.5 asks for this for HMAC keys. */
export const MIN_SECRET_BYTES = 32;

/**
 * Stand-ins used only when ENVIRONMENT=development and the secret is unset. They are public
 * (they are in this file), so production refuses them even when someone sets them explicitly.
 */
export const DEV_SECRETS = {
  OR3_BASIC_AUTH_JWT_SECRET: 'DEV-ONLY-INSECURE-jwt-secret--never-use-in-production',
  OR3_STORAGE_URL_SECRET: 'DEV-ONLY-INSECURE-storage-url-secret--never-use-in-production',
} as const;

/** Origins a local dev server and the Vite dev server are reached at; allowed in development only. */
export const DEV_ORIGINS = [
  'http://127.0.0.1:8787',
  'http://localhost:8787',
  'http://127.0.0.1:5173',
  'http://localhost:5173',
];

export const GITHUB_ACTIONS_ISSUER = 'https://token.actions.githubusercontent.com';

const JWS_ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Rate-limit names that OR3_RATE_LIMIT_OVERRIDES_JSON may set (requests per minute). */
export const RATE_LIMIT_NAMES = ['push', 'pull', 'updateCursor', 'gc'] as const;
export type RateLimitName = (typeof RATE_LIMIT_NAMES)[number];

export interface OidcProviderConfig {
  id: string;
  issuer: string;
  audience: string[];
  algorithms: (typeof JWS_ASYMMETRIC_ALGORITHMS)[number][];
  jwksUrl?: string;
  jwks?: { keys: Record<string, unknown>[] };
  /** Clerk's `azp` allow-list: when set, a token's `azp` must be one of these origins. */
  authorizedParties?: string[];
  /** Claims that must be present (e.g. Clerk's `sid`, which template tokens lack). */
  requiredClaims?: string[];
  /** Claims that must equal one of the given values (e.g. GitHub's `repository_owner_id`). */
  claims?: Record<string, string[]>;
  /**
   * The oldest `iat` accepted, in seconds: unset → OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS; `0` → no
   * bound for this provider (then a token without `iat` is accepted too).
   */
  maxTokenAgeSeconds?: number;
}

export interface Config {
  environment: 'production' | 'development';
  production: boolean;
  /** Exact origins allowed for credentialed CORS and cookie-authenticated mutations. */
  allowedOrigins: string[];
  /** Development only: `*` in OR3_ALLOWED_ORIGINS echoes any origin back (never `*` itself). */
  allowAnyOrigin: boolean;
  auth: {
    jwtSecret: string;
    jwtSecretPrevious?: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    rotationGraceMs: number;
    registration: 'open' | 'invite' | 'closed';
    autoProvision: boolean;
    bootstrap?: { email: string; password: string };
    oidcProviders: OidcProviderConfig[];
    /** Default oldest `iat` accepted from a federated token (seconds); providers may override. */
    oidcMaxTokenAgeSeconds: number;
  };
  workspaces: {
    /** Workspaces one user may create per rolling hour (`POST /api/workspaces`). */
    createLimitPerHour: number;
  };
  storage: {
    urlSecret: string;
    urlSecretPrevious?: string;
    allowedMimeTypes: string[];
    workspaceQuotaBytes: number;
    maxFileSizeBytes: number;
    gcRetentionSeconds: number;
    gcCooldownMs: number;
    s3?: { accountId: string; accessKeyId: string; secretAccessKey: string; bucketName: string };
  };
  sync: { retentionSeconds: number; workspaceQuotaBytes: number };
  rateLimitOverrides: Partial<Record<RateLimitName, number>>;
  /** Names of the secrets replaced by dev stand-ins (development only), for a loud warning. */
  devSecretsInUse: string[];
}

export interface ConfigProblem {
  variable: string;
  message: string;
  /** How to fix it, e.g. the `wrangler secret put` command. */
  fix: string;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

// ---------------------------------------------------------------------------------------------
// Field schemas. Each takes the raw string (or undefined) and yields the typed value; an empty
// string counts as unset so `[vars]` entries can be blanked without deleting them.

const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const intVar = (fallback: number, min: number, max: number) =>
  z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+$/, 'must be a whole number')
      .transform(Number)
      .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
      .optional()
      .transform((v) => v ?? fallback),
  );

const boolVar = (fallback: boolean) =>
  z.preprocess(
    blankToUndefined,
    z
      .enum(['true', 'false'], { message: 'must be "true" or "false"' })
      .optional()
      .transform((v) => (v === undefined ? fallback : v === 'true')),
  );

const jsonVar = <T extends z.ZodType>(schema: T, fallback: z.input<T>) =>
  z.preprocess(
    blankToUndefined,
    z
      .string()
      .optional()
      .transform((text, ctx) => {
        if (text === undefined) return fallback;
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
          return z.NEVER;
        }
      })
      .pipe(schema),
  );

/** Bounds for the oldest federated token accepted (seconds): a minute … a year. */
const MIN_TOKEN_AGE_SECONDS = 60;
const MAX_TOKEN_AGE_SECONDS = 31_536_000;

const oidcProviderSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'id must be lowercase letters, digits, - or _'),
    issuer: z.url({ message: 'issuer must be a URL' }),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((a) => (Array.isArray(a) ? a : [a])),
    algorithms: z.array(z.enum(JWS_ASYMMETRIC_ALGORITHMS)).min(1).default(['RS256']),
    jwksUrl: z.url({ message: 'jwksUrl must be a URL' }).optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    authorizedParties: z.array(z.string().min(1)).optional(),
    requiredClaims: z.array(z.string().min(1)).optional(),
    claims: z
      .record(z.string().min(1), z.union([z.string(), z.array(z.string()).min(1)]))
      .transform((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])))
      .optional(),
    maxTokenAgeSeconds: z
      .number()
      .int()
      .refine((n) => n === 0 || (n >= MIN_TOKEN_AGE_SECONDS && n <= MAX_TOKEN_AGE_SECONDS), `maxTokenAgeSeconds must be 0 (no bound) or ${MIN_TOKEN_AGE_SECONDS} … ${MAX_TOKEN_AGE_SECONDS}`)
      .optional(),
  })
  .refine((p) => (p.jwksUrl === undefined) !== (p.jwks === undefined), {
    message: 'each provider needs exactly one of jwksUrl or jwks',
  });

const rateLimitOverridesSchema = z.partialRecord(z.enum(RATE_LIMIT_NAMES), z.number().int().min(1).max(100_000));

const schema = z.object({
  ENVIRONMENT: z.enum(['production', 'development'], {
    message: 'must be "production" or "development"',
  }),
  OR3_ALLOWED_ORIGINS: z.string().optional(),
  OR3_BASIC_AUTH_ACCESS_TTL_SECONDS: intVar(900, 60, 86_400),
  OR3_BASIC_AUTH_REFRESH_TTL_SECONDS: intVar(2_592_000, 3_600, 31_536_000),
  OR3_BASIC_AUTH_ROTATION_GRACE_MS: intVar(30_000, 0, 300_000),
  OR3_BASIC_AUTH_REGISTRATION: z.preprocess(
    blankToUndefined,
    z.enum(['open', 'invite', 'closed'], { message: 'must be open, invite or closed' }).default('invite'),
  ),
  OR3_AUTH_AUTO_PROVISION: boolVar(true),
  OR3_AUTH_OIDC_PROVIDERS: jsonVar(z.array(oidcProviderSchema), []),
  OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS: intVar(86_400, MIN_TOKEN_AGE_SECONDS, MAX_TOKEN_AGE_SECONDS),
  OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR: intVar(20, 1, 100_000),
  OR3_STORAGE_ALLOWED_MIME_TYPES: z.preprocess(
    blankToUndefined,
    z
      .string()
      .default('image/png,image/jpeg,image/gif,image/webp,application/pdf')
      .transform((s) => s.split(',').map((m) => m.trim().toLowerCase()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/, 'each entry must be a MIME type like image/png'))),
  ),
  OR3_STORAGE_WORKSPACE_QUOTA_BYTES: intVar(1_073_741_824, 1, Number.MAX_SAFE_INTEGER),
  OR3_MAX_CLOUD_FILE_SIZE_BYTES: intVar(104_857_600, 1, Number.MAX_SAFE_INTEGER),
  OR3_STORAGE_GC_RETENTION_SECONDS: intVar(604_800, 0, 31_536_000),
  OR3_STORAGE_GC_COOLDOWN_MS: intVar(60_000, 0, 86_400_000),
  OR3_SYNC_RETENTION_SECONDS: intVar(2_592_000, 3_600, 31_536_000),
  // A Durable Object's SQLite storage is at most 10 GB (docs/configuration.md).
  OR3_SYNC_WORKSPACE_QUOTA_BYTES: intVar(1_073_741_824, 1_024, 10 * 1_073_741_824),
  OR3_RATE_LIMIT_OVERRIDES_JSON: jsonVar(rateLimitOverridesSchema, {}),
});

const secretFix = (name: string) => `set it with \`wrangler secret put ${name}\` (at least ${MIN_SECRET_BYTES} random bytes, e.g. \`openssl rand -base64 48\`)`;
const varFix = (name: string) => `fix ${name} in wrangler.toml [vars] or with \`wrangler secret put ${name}\`; see docs/configuration.md`;

const byteLength = (s: string) => new TextEncoder().encode(s).byteLength;

/** Validates one secret; returns the value to use (a dev stand-in when allowed) or records a problem. */
function resolveSecret(
  env: Bindings,
  name: keyof typeof DEV_SECRETS,
  production: boolean,
  problems: ConfigProblem[],
  devSecretsInUse: string[],
): string {
  const value = env[name];
  if (value === undefined || value === '') {
    if (!production) {
      devSecretsInUse.push(name);
      return DEV_SECRETS[name];
    }
    problems.push({ variable: name, message: `${name} is not set`, fix: secretFix(name) });
    return '';
  }
  checkSecretStrength(name, value, production, problems);
  return value;
}

function checkSecretStrength(name: string, value: string, production: boolean, problems: ConfigProblem[]) {
  if (byteLength(value) < MIN_SECRET_BYTES) {
    problems.push({ variable: name, message: `${name} is shorter than ${MIN_SECRET_BYTES} bytes`, fix: secretFix(name) });
  } else if (production && (Object.values(DEV_SECRETS) as string[]).includes(value)) {
    problems.push({ variable: name, message: `${name} is a public development secret`, fix: secretFix(name) });
  }
}

function optionalSecret(env: Bindings, name: keyof Bindings, production: boolean, problems: ConfigProblem[]) {
  const value = env[name];
  if (typeof value !== 'string' || value === '') return undefined;
  checkSecretStrength(String(name), value, production, problems);
  return value;
}

/** Parses OR3_ALLOWED_ORIGINS into exact origins; `*` only in development. */
function parseOrigins(raw: string | undefined, production: boolean, problems: ConfigProblem[]) {
  const name = 'OR3_ALLOWED_ORIGINS';
  const entries = (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const origins: string[] = [];
  let any = false;
  for (const entry of entries) {
    if (entry === '*') {
      if (production) {
        problems.push({
          variable: name,
          message: `${name} must not contain "*" in production: credentialed CORS needs exact origins`,
          fix: `list exact origins, e.g. OR3_ALLOWED_ORIGINS="https://chat.example.com"`,
        });
      } else any = true;
      continue;
    }
    let origin: string | undefined;
    try {
      origin = new URL(entry).origin;
    } catch {
      origin = undefined;
    }
    if (!origin || origin === 'null' || origin !== entry.replace(/\/$/, '')) {
      problems.push({ variable: name, message: `${name} entry "${entry}" is not an origin like https://app.example.com`, fix: varFix(name) });
      continue;
    }
    origins.push(origin);
  }
  if (!production) for (const o of DEV_ORIGINS) if (!origins.includes(o)) origins.push(o);
  return { origins, any };
}

/** Parses and validates the whole configuration. Pure: no caching, no logging. */
export function parseConfig(env: Bindings): ConfigResult {
  const problems: ConfigProblem[] = [];
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0] ?? 'configuration');
      const where = issue.path.length > 1 ? ` (at ${issue.path.slice(1).join('.')})` : '';
      problems.push({ variable, message: `${variable} ${issue.message}${where}`, fix: varFix(variable) });
    }
    return { ok: false, problems };
  }
  const v = parsed.data;
  const production = v.ENVIRONMENT === 'production';
  const devSecretsInUse: string[] = [];

  const { origins, any } = parseOrigins(v.OR3_ALLOWED_ORIGINS, production, problems);
  const jwtSecret = resolveSecret(env, 'OR3_BASIC_AUTH_JWT_SECRET', production, problems, devSecretsInUse);
  const urlSecret = resolveSecret(env, 'OR3_STORAGE_URL_SECRET', production, problems, devSecretsInUse);
  const jwtSecretPrevious = optionalSecret(env, 'OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS', production, problems);
  const urlSecretPrevious = optionalSecret(env, 'OR3_STORAGE_URL_SECRET_PREVIOUS', production, problems);

  let bootstrap: Config['auth']['bootstrap'];
  const bEmail = env.OR3_BASIC_AUTH_BOOTSTRAP_EMAIL?.trim();
  const bPassword = env.OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD;
  if (bEmail || bPassword) {
    if (!bEmail || !bPassword) {
      const missing = bEmail ? 'OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD' : 'OR3_BASIC_AUTH_BOOTSTRAP_EMAIL';
      problems.push({ variable: missing, message: `${missing} must be set together with its pair`, fix: secretFix(missing) });
    } else if (!z.email().safeParse(bEmail).success) {
      problems.push({ variable: 'OR3_BASIC_AUTH_BOOTSTRAP_EMAIL', message: 'OR3_BASIC_AUTH_BOOTSTRAP_EMAIL is not an email address', fix: varFix('OR3_BASIC_AUTH_BOOTSTRAP_EMAIL') });
    } else if ([...bPassword].length < 12) {
      problems.push({ variable: 'OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD', message: 'OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD must be at least 12 characters', fix: secretFix('OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD') });
    } else {
      bootstrap = { email: bEmail.toLowerCase(), password: bPassword };
    }
  }

  if (production) {
    for (const p of v.OR3_AUTH_OIDC_PROVIDERS) {
      if (p.jwksUrl && !p.jwksUrl.startsWith('https://')) {
        problems.push({ variable: 'OR3_AUTH_OIDC_PROVIDERS', message: `provider "${p.id}" jwksUrl must use https in production`, fix: varFix('OR3_AUTH_OIDC_PROVIDERS') });
      }
      // Any workflow on GitHub can mint a token for any audience: without a claim rule every
      // GitHub repository could sign in.
      if (p.issuer === GITHUB_ACTIONS_ISSUER && !Object.keys(p.claims ?? {}).length) {
        problems.push({
          variable: 'OR3_AUTH_OIDC_PROVIDERS',
          message: `provider "${p.id}" (GitHub Actions) needs "claims", e.g. {"repository_owner_id": "<your org id>"}`,
          fix: varFix('OR3_AUTH_OIDC_PROVIDERS'),
        });
      }
    }
  }
  const ids = v.OR3_AUTH_OIDC_PROVIDERS.map((p) => p.id);
  if (new Set(ids).size !== ids.length) {
    problems.push({ variable: 'OR3_AUTH_OIDC_PROVIDERS', message: 'provider ids must be unique', fix: varFix('OR3_AUTH_OIDC_PROVIDERS') });
  }

  let s3: Config['storage']['s3'];
  const s3Vars = [env.R2_ACCOUNT_ID, env.R2_ACCESS_KEY_ID, env.R2_SECRET_ACCESS_KEY];
  if (s3Vars.some(Boolean)) {
    if (!s3Vars.every(Boolean)) {
      problems.push({
        variable: 'R2_ACCOUNT_ID',
        message: 'R2_ACCOUNT_ID, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY must be set together (or not at all)',
        fix: secretFix('R2_SECRET_ACCESS_KEY'),
      });
    } else {
      s3 = {
        accountId: env.R2_ACCOUNT_ID!,
        accessKeyId: env.R2_ACCESS_KEY_ID!,
        secretAccessKey: env.R2_SECRET_ACCESS_KEY!,
        bucketName: env.R2_BUCKET_NAME || 'or3-edge-blobs',
      };
    }
  }

  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    config: {
      environment: v.ENVIRONMENT,
      production,
      allowedOrigins: origins,
      allowAnyOrigin: any,
      auth: {
        jwtSecret,
        jwtSecretPrevious,
        accessTtlSeconds: v.OR3_BASIC_AUTH_ACCESS_TTL_SECONDS,
        refreshTtlSeconds: v.OR3_BASIC_AUTH_REFRESH_TTL_SECONDS,
        rotationGraceMs: v.OR3_BASIC_AUTH_ROTATION_GRACE_MS,
        registration: v.OR3_BASIC_AUTH_REGISTRATION,
        autoProvision: v.OR3_AUTH_AUTO_PROVISION,
        bootstrap,
        oidcProviders: v.OR3_AUTH_OIDC_PROVIDERS as OidcProviderConfig[],
        oidcMaxTokenAgeSeconds: v.OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS,
      },
      workspaces: { createLimitPerHour: v.OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR },
      storage: {
        urlSecret,
        urlSecretPrevious,
        allowedMimeTypes: v.OR3_STORAGE_ALLOWED_MIME_TYPES,
        workspaceQuotaBytes: v.OR3_STORAGE_WORKSPACE_QUOTA_BYTES,
        maxFileSizeBytes: v.OR3_MAX_CLOUD_FILE_SIZE_BYTES,
        gcRetentionSeconds: v.OR3_STORAGE_GC_RETENTION_SECONDS,
        gcCooldownMs: v.OR3_STORAGE_GC_COOLDOWN_MS,
        s3,
      },
      sync: { retentionSeconds: v.OR3_SYNC_RETENTION_SECONDS, workspaceQuotaBytes: v.OR3_SYNC_WORKSPACE_QUOTA_BYTES },
      rateLimitOverrides: v.OR3_RATE_LIMIT_OVERRIDES_JSON,
      devSecretsInUse,
    },
  };
}

// The env object is stable for the life of an isolate, so parsing once per env object is
// parsing once per isolate (and tests that pass a modified env get their own parse).
const cache = new WeakMap<object, ConfigResult>();

/** `parseConfig`, memoised per env object. */
export function loadConfig(env: Bindings): ConfigResult {
  let result = cache.get(env);
  if (!result) {
    result = parseConfig(env);
    cache.set(env, result);
  }
  return result;
}
