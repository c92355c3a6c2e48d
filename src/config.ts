/**
 * Configuration: every variable of docs/configuration.md, parsed once per isolate by one zod
 * schema from the raw `env` to the typed `Config`. Production fails closed: any problem makes
 * every request answer 503 `misconfigured` and the log name the variable and its fix
 * (src/http/request-context.ts). Development (`npm run dev`) runs with no secrets at all.
 *
 * Two stages: the first reads each variable's own format, and while any is malformed nothing
 * else is judged; the second applies the rules that depend on ENVIRONMENT or tie variables
 * together (secrets, origins, pairs, OIDC providers) and reports all it finds.
 */
import * as z from 'zod';
import { oidcProviderSchema, providerListProblems, TOKEN_AGE_SECONDS } from './oidc-providers';

/** Secrets must carry at least 256 bits; RFC 8725 §3.5 asks for this for HMAC keys. */
export const MIN_SECRET_BYTES = 32;

/** Stand-ins for unset secrets in development only. Public (they are here), so production refuses them. */
export const DEV_SECRETS = {
  OR3_BASIC_AUTH_JWT_SECRET: 'DEV-ONLY-INSECURE-jwt-secret--never-use-in-production',
  OR3_STORAGE_URL_SECRET: 'DEV-ONLY-INSECURE-storage-url-secret--never-use-in-production',
} as const;

/** Origins a local dev server and the Vite dev server are reached at; allowed in development only. */
export const DEV_ORIGINS = ['http://127.0.0.1:8787', 'http://localhost:8787', 'http://127.0.0.1:5173', 'http://localhost:5173'];

/** One problem, for the log: the variable, what is wrong, and how to fix it (e.g. the `wrangler secret put` command). */
export type ConfigProblem = { variable: string; message: string; fix: string };

const secretFix = (name: string) => `set it with \`wrangler secret put ${name}\` (at least ${MIN_SECRET_BYTES} random bytes, e.g. \`openssl rand -base64 48\`)`;
const wildcardFix = 'list exact origins, e.g. OR3_ALLOWED_ORIGINS="https://chat.example.com"';
const varFix = (name: string) => `fix ${name} in wrangler.toml [vars] or with \`wrangler secret put ${name}\`; see docs/configuration.md`;

// -- Stage 1: each variable's own format.
/** An unset or blank variable takes its default (so `[vars]` entries can be blanked); a set one must be valid. */
const withDefault = <T extends z.ZodType>(schema: T, fallback: Exclude<z.output<T>, undefined>) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema.default(fallback));

const wholeNumber = z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number);
const intVar = (fallback: number, min: number, max: number) =>
  withDefault(wholeNumber.pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`)), fallback);

const boolean = z.enum(['true', 'false'], { message: 'must be "true" or "false"' }).transform((v) => v === 'true');
const json = z.string().transform((text, ctx): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
    return z.NEVER;
  }
});

const mimeTypes = z
  .string()
  .transform((list) => list.split(',').flatMap((m) => m.trim().toLowerCase() || []))
  .pipe(z.array(z.string().regex(/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/, 'each entry must be a MIME type like image/png')));
/** Per-minute sync limits by the names of src/limiter.ts; a typo is refused, not ignored. */
const rateLimits = z.partialRecord(z.enum(['push', 'pull', 'updateCursor', 'gc']), z.number().int().min(1).max(100_000));

/**
 * Webhook retry delays: comma-separated seconds, 1–10 entries, each at most 43,200 (12 h, the
 * longest delay a Queue message may be retried with).
 */
const retryDelays = z
  .string()
  .transform((list) => list.split(',').map((s) => s.trim()))
  .pipe(
    z
      .array(z.string().regex(/^\d+$/, 'each entry must be a whole number of seconds').transform(Number).pipe(z.number().max(43_200)))
      .min(1)
      .max(10),
  );

/** Secrets, origins, pairs: free text here, judged in stage 2. */
const text = z.string().optional();

const variables = z.object({
  ENVIRONMENT: z.enum(['production', 'development'], { message: 'must be "production" or "development"' }),
  OR3_ALLOWED_ORIGINS: text,
  OR3_BASIC_AUTH_JWT_SECRET: text,
  /** The previous JWT secret, still accepted for verification while tokens signed with it live. */
  OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS: text,
  OR3_BASIC_AUTH_ACCESS_TTL_SECONDS: intVar(900, 60, 86_400),
  OR3_BASIC_AUTH_REFRESH_TTL_SECONDS: intVar(2_592_000, 3_600, 31_536_000),
  OR3_BASIC_AUTH_ROTATION_GRACE_MS: intVar(30_000, 0, 300_000),
  /** When a failed password sign-in is answered, counted from its arrival (docs/auth.md "Sign-in timing"). */
  OR3_BASIC_AUTH_FAILED_SIGN_IN_MS: intVar(1_000, 50, 10_000),
  OR3_BASIC_AUTH_REGISTRATION: withDefault(z.enum(['open', 'invite', 'closed'], { message: 'must be open, invite or closed' }), 'invite'),
  OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: text,
  OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: text,
  OR3_AUTH_AUTO_PROVISION: withDefault(boolean, true),
  OR3_AUTH_OIDC_PROVIDERS: withDefault(json.pipe(z.array(oidcProviderSchema)), []),
  OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS: intVar(86_400, TOKEN_AGE_SECONDS.min, TOKEN_AGE_SECONDS.max),
  OR3_AUTH_CACHE_TTL_SECONDS: intVar(60, 1, 300),
  OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR: intVar(20, 1, 100_000),
  OR3_STORAGE_URL_SECRET: text,
  /** The previous storage URL secret, accepted until URLs signed with it have expired. */
  OR3_STORAGE_URL_SECRET_PREVIOUS: text,
  OR3_STORAGE_ALLOWED_MIME_TYPES: withDefault(mimeTypes, ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf']),
  /** Generic files of any MIME type for clients that declare file_kind_capability (OR3's allowAnyFileType; off by default, as OR3's). */
  OR3_STORAGE_ALLOW_ANY_FILE_TYPE: withDefault(boolean, false),
  OR3_STORAGE_WORKSPACE_QUOTA_BYTES: intVar(1_073_741_824, 1, Number.MAX_SAFE_INTEGER),
  OR3_MAX_CLOUD_FILE_SIZE_BYTES: intVar(104_857_600, 1, Number.MAX_SAFE_INTEGER),
  OR3_STORAGE_GC_RETENTION_SECONDS: intVar(604_800, 0, 31_536_000),
  OR3_STORAGE_GC_COOLDOWN_MS: intVar(60_000, 0, 86_400_000),
  OR3_SYNC_RETENTION_SECONDS: intVar(2_592_000, 3_600, 31_536_000),
  // A Durable Object's SQLite storage is at most 10 GB (docs/configuration.md).
  OR3_SYNC_WORKSPACE_QUOTA_BYTES: intVar(1_073_741_824, 1_024, 10 * 1_073_741_824),
  OR3_RATE_LIMIT_OVERRIDES_JSON: withDefault(json.pipe(rateLimits), {}),
  /** Development only: webhooks may target http://127.0.0.1:<port> and http://localhost:<port> (docs/webhooks.md). */
  OR3_WEBHOOK_ALLOW_LOOPBACK: withDefault(boolean, false),
  /** Seconds before each retry of a failed delivery; its length is the number of retries (docs/webhooks.md "Retries"). */
  OR3_WEBHOOK_RETRY_DELAYS_SECONDS: withDefault(retryDelays, [30, 120, 600, 1800, 3600]),
  /** An endpoint failing without a success for this long is disabled. */
  OR3_WEBHOOK_DISABLE_AFTER_SECONDS: intVar(86_400, 0, 30 * 86_400),
  /** Requests per minute one service token may make (docs/service-api.md). */
  OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE: intVar(600, 1, 100_000),
  R2_ACCOUNT_ID: text,
  R2_ACCESS_KEY_ID: text,
  R2_SECRET_ACCESS_KEY: text,
  R2_BUCKET_NAME: text,
});

type Variables = z.output<typeof variables>;
type ConfigVariable = keyof typeof variables.shape;

/** What `parseConfig` reads: any `env` that may carry the variables (its bindings are ignored). */
export type RawEnv = { readonly [K in ConfigVariable]?: unknown };

/** Variables wrangler.toml does not declare (secrets, vars left at their defaults): src/env.ts adds them to `Env`. */
export type UndeclaredVariables = { [K in Exclude<ConfigVariable, keyof Env>]?: string };

// -- Stage 2: rules across variables. Each reports complete messages and returns the value to use.
type Report = (variable: string, message: string, fix?: string) => void;
type SecretName = 'OR3_BASIC_AUTH_JWT_SECRET' | 'OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS' | 'OR3_STORAGE_URL_SECRET' | 'OR3_STORAGE_URL_SECRET_PREVIOUS';

/** A set secret must be long enough, and in production not one of the public dev stand-ins. */
function secret(v: Variables, name: SecretName, production: boolean, report: Report): string | undefined {
  const value = v[name];
  if (!value) return undefined;
  if (new TextEncoder().encode(value).byteLength < MIN_SECRET_BYTES) report(name, `${name} is shorter than ${MIN_SECRET_BYTES} bytes`, secretFix(name));
  else if (production && Object.values<string>(DEV_SECRETS).includes(value)) report(name, `${name} is a public development secret`, secretFix(name));
  return value;
}

/** `secret`, required in production; in development a dev stand-in replaces a missing one. */
function requiredSecret(v: Variables, name: keyof typeof DEV_SECRETS, production: boolean, report: Report, devSecretsInUse: string[]): string {
  const value = secret(v, name, production, report);
  // .env sets the stand-ins explicitly (wrangler.toml requires the names): still worth the warning.
  if (value === DEV_SECRETS[name] && !production) devSecretsInUse.push(name);
  if (value !== undefined) return value;
  if (production) report(name, `${name} is not set`, secretFix(name));
  else devSecretsInUse.push(name);
  return production ? '' : DEV_SECRETS[name];
}

/** OR3_ALLOWED_ORIGINS as exact origins; `*` (echo any origin) only in development. */
function allowedOrigins(raw: string | undefined, production: boolean, report: Report) {
  const name = 'OR3_ALLOWED_ORIGINS';
  const origins: string[] = [];
  let any = false;
  for (const entry of (raw ?? '').split(',').flatMap((s) => s.trim() || [])) {
    const origin = URL.parse(entry)?.origin;
    if (entry === '*' && !production) any = true;
    else if (entry === '*') report(name, `${name} must not contain "*" in production: credentialed CORS needs exact origins`, wildcardFix);
    else if (origin && origin !== 'null' && origin === entry.replace(/\/$/, '')) origins.push(origin);
    else report(name, `${name} entry "${entry}" is not an origin like https://app.example.com`);
  }
  if (!production) origins.push(...DEV_ORIGINS.filter((o) => !origins.includes(o)));
  return { origins, any };
}

/** The first deployment admin: both variables or neither, a real email and a long password. */
function bootstrapAdmin(v: Variables, report: Report) {
  const [emailVar, passwordVar] = ['OR3_BASIC_AUTH_BOOTSTRAP_EMAIL', 'OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD'];
  const email = v.OR3_BASIC_AUTH_BOOTSTRAP_EMAIL?.trim();
  const password = v.OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD;
  if (email && password) {
    if (!z.email().safeParse(email).success) report(emailVar, `${emailVar} is not an email address`);
    else if ([...password].length < 12) report(passwordVar, `${passwordVar} must be at least 12 characters`, secretFix(passwordVar));
    else return { email: email.toLowerCase(), password };
  } else if (email || password) {
    const missing = email ? passwordVar : emailVar;
    report(missing, `${missing} must be set together with its pair`, secretFix(missing));
  }
  return undefined;
}

/** Direct-to-R2 (S3) credentials: all three or none. */
function s3Credentials(v: Variables, report: Report) {
  const { R2_ACCOUNT_ID: accountId, R2_ACCESS_KEY_ID: accessKeyId, R2_SECRET_ACCESS_KEY: secretAccessKey } = v;
  if (accountId && accessKeyId && secretAccessKey) return { accountId, accessKeyId, secretAccessKey, bucketName: v.R2_BUCKET_NAME || 'or3-edge-blobs' };
  const message = 'R2_ACCOUNT_ID, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY must be set together (or not at all)';
  if (accountId || accessKeyId || secretAccessKey) report('R2_ACCOUNT_ID', message, secretFix('R2_SECRET_ACCESS_KEY'));
  return undefined;
}

const configSchema = variables.transform((v, ctx) => {
  if (ctx.issues.length) return z.NEVER; // a pipe lets one stage-1 issue through (an unknown key): stop at it too
  const report: Report = (variable, message, fix = varFix(variable)) => ctx.addIssue({ code: 'custom', input: v, path: [variable], message, params: { fix } });
  const production = v.ENVIRONMENT === 'production';
  const devSecretsInUse: string[] = [];
  // Problems are reported in this order.
  const { origins, any } = allowedOrigins(v.OR3_ALLOWED_ORIGINS, production, report);
  const jwtSecret = requiredSecret(v, 'OR3_BASIC_AUTH_JWT_SECRET', production, report, devSecretsInUse);
  const urlSecret = requiredSecret(v, 'OR3_STORAGE_URL_SECRET', production, report, devSecretsInUse);
  const jwtSecretPrevious = secret(v, 'OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS', production, report);
  const urlSecretPrevious = secret(v, 'OR3_STORAGE_URL_SECRET_PREVIOUS', production, report);
  const bootstrap = bootstrapAdmin(v, report);
  for (const problem of providerListProblems(v.OR3_AUTH_OIDC_PROVIDERS, production)) report('OR3_AUTH_OIDC_PROVIDERS', problem);
  const s3 = s3Credentials(v, report);
  if (production && v.OR3_WEBHOOK_ALLOW_LOOPBACK) {
    report(
      'OR3_WEBHOOK_ALLOW_LOOPBACK',
      'OR3_WEBHOOK_ALLOW_LOOPBACK is for development only: production webhooks go to public https hosts',
      'remove OR3_WEBHOOK_ALLOW_LOOPBACK (or set it to "false")',
    );
  }
  return {
    environment: v.ENVIRONMENT,
    production,
    /** Exact origins allowed for credentialed CORS and cookie-authenticated mutations. */
    allowedOrigins: origins,
    /** Development only: `*` in OR3_ALLOWED_ORIGINS echoes any origin back (never `*` itself). */
    allowAnyOrigin: any,
    auth: {
      jwtSecret,
      jwtSecretPrevious,
      accessTtlSeconds: v.OR3_BASIC_AUTH_ACCESS_TTL_SECONDS,
      refreshTtlSeconds: v.OR3_BASIC_AUTH_REFRESH_TTL_SECONDS,
      rotationGraceMs: v.OR3_BASIC_AUTH_ROTATION_GRACE_MS,
      /** Every failed password sign-in is answered no earlier than this after it arrived (ms). */
      failedSignInMs: v.OR3_BASIC_AUTH_FAILED_SIGN_IN_MS,
      registration: v.OR3_BASIC_AUTH_REGISTRATION,
      autoProvision: v.OR3_AUTH_AUTO_PROVISION,
      bootstrap,
      oidcProviders: v.OR3_AUTH_OIDC_PROVIDERS,
      /** Default oldest `iat` accepted from a federated token (seconds); providers may override. */
      oidcMaxTokenAgeSeconds: v.OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS,
      /** How long a workspace's object trusts an authorization fact read from D1 (ms). */
      cacheTtlMs: v.OR3_AUTH_CACHE_TTL_SECONDS * 1000,
    },
    workspaces: { createLimitPerHour: v.OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR },
    storage: {
      urlSecret,
      urlSecretPrevious,
      allowedMimeTypes: v.OR3_STORAGE_ALLOWED_MIME_TYPES,
      allowAnyFileType: v.OR3_STORAGE_ALLOW_ANY_FILE_TYPE,
      workspaceQuotaBytes: v.OR3_STORAGE_WORKSPACE_QUOTA_BYTES,
      maxFileSizeBytes: v.OR3_MAX_CLOUD_FILE_SIZE_BYTES,
      gcRetentionSeconds: v.OR3_STORAGE_GC_RETENTION_SECONDS,
      gcCooldownMs: v.OR3_STORAGE_GC_COOLDOWN_MS,
      s3,
    },
    sync: { retentionSeconds: v.OR3_SYNC_RETENTION_SECONDS, workspaceQuotaBytes: v.OR3_SYNC_WORKSPACE_QUOTA_BYTES },
    rateLimitOverrides: v.OR3_RATE_LIMIT_OVERRIDES_JSON,
    webhooks: {
      allowLoopback: v.OR3_WEBHOOK_ALLOW_LOOPBACK,
      retryDelaysSeconds: v.OR3_WEBHOOK_RETRY_DELAYS_SECONDS,
      disableAfterMs: v.OR3_WEBHOOK_DISABLE_AFTER_SECONDS * 1000,
    },
    service: { rateLimitPerMinute: v.OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE },
    /** Names of the secrets replaced by dev stand-ins (development only), for a loud warning. */
    devSecretsInUse,
  };
});

export type Config = z.output<typeof configSchema>;
export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/** Parses and validates the whole configuration. Pure: no caching, no logging. */
export function parseConfig(env: RawEnv): ConfigResult {
  const parsed = configSchema.safeParse(env);
  if (parsed.success) return { ok: true, config: parsed.data };
  const problems: ConfigProblem[] = parsed.error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? 'configuration');
    // Stage 2 wrote a complete message and its fix; stage 1 says what is wrong with the value.
    const fix: unknown = issue.code === 'custom' ? issue.params?.fix : undefined;
    if (typeof fix === 'string') return { variable, message: issue.message, fix };
    const where = issue.path.length > 1 ? ` (at ${issue.path.slice(1).join('.')})` : '';
    return { variable, message: `${variable} ${issue.message}${where}`, fix: varFix(variable) };
  });
  return { ok: false, problems };
}

// The env object is stable for the life of an isolate, so parsing once per env object is
// parsing once per isolate (and tests that pass a modified env get their own parse).
const cache = new WeakMap<RawEnv, ConfigResult>();

/** `parseConfig`, memoised per env object. */
export function loadConfig(env: RawEnv): ConfigResult {
  let result = cache.get(env);
  if (!result) cache.set(env, (result = parseConfig(env)));
  return result;
}
