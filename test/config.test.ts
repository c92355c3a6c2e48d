import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEV_SECRETS, parseConfig } from '../src/config';
import type { Bindings } from '../src/env';
import { apiWithEnv } from './helpers';

const base = env as unknown as Bindings;

describe('configuration (parseConfig)', () => {
  it('accepts the production defaults from wrangler.toml with strong secrets', () => {
    // The test bindings open registration; the production default applies when it is unset.
    const result = parseConfig({ ...base, OR3_BASIC_AUTH_REGISTRATION: '' });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.production).toBe(true);
    expect(result.config.auth.accessTtlSeconds).toBe(900);
    expect(result.config.auth.registration).toBe('invite');
    expect(result.config.auth.autoProvision).toBe(true);
    expect(result.config.storage.allowedMimeTypes).toContain('application/pdf');
    expect(result.config.sync.retentionSeconds).toBe(2_592_000);
    expect(result.config.allowedOrigins).toEqual(['https://app.example.com']);
    expect(result.config.devSecretsInUse).toEqual([]);
  });

  it.each([
    ['OR3_BASIC_AUTH_JWT_SECRET', undefined, 'is not set'],
    ['OR3_BASIC_AUTH_JWT_SECRET', 'short-secret', 'shorter than 32 bytes'],
    ['OR3_STORAGE_URL_SECRET', '', 'is not set'],
    ['OR3_STORAGE_URL_SECRET', 'y'.repeat(31), 'shorter than 32 bytes'],
    ['OR3_BASIC_AUTH_JWT_SECRET', DEV_SECRETS.OR3_BASIC_AUTH_JWT_SECRET, 'public development secret'],
    ['OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS', 'weak', 'shorter than 32 bytes'],
  ])('production refuses %s = %j', (name, value, message) => {
    const result = parseConfig({ ...base, [name]: value });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const problem = result.problems.find((p) => p.variable === name);
    expect(problem?.message).toContain(message);
    expect(problem?.fix).toContain(`wrangler secret put ${name}`);
  });

  it('production refuses a wildcard origin; development echoes any origin instead', () => {
    const prod = parseConfig({ ...base, OR3_ALLOWED_ORIGINS: '*' });
    expect(prod.ok).toBe(false);
    const dev = parseConfig({ ...base, ENVIRONMENT: 'development', OR3_ALLOWED_ORIGINS: '*' });
    expect(dev.ok && dev.config.allowAnyOrigin).toBe(true);
  });

  it('refuses origins with paths and malformed entries', () => {
    const result = parseConfig({ ...base, OR3_ALLOWED_ORIGINS: 'https://ok.example.com,https://bad.example.com/app,not a url' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.message).join(' ')).toMatch(/bad\.example\.com\/app.*not a url/);
  });

  it('development runs with no secrets at all, using labelled dev secrets', () => {
    const result = parseConfig({
      ...base,
      ENVIRONMENT: 'development',
      OR3_BASIC_AUTH_JWT_SECRET: undefined,
      OR3_STORAGE_URL_SECRET: undefined,
      OR3_ALLOWED_ORIGINS: '',
    } as unknown as Bindings);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.auth.jwtSecret).toBe(DEV_SECRETS.OR3_BASIC_AUTH_JWT_SECRET);
    expect(result.config.devSecretsInUse).toEqual(['OR3_BASIC_AUTH_JWT_SECRET', 'OR3_STORAGE_URL_SECRET']);
    expect(result.config.allowedOrigins).toContain('http://127.0.0.1:8787');
    expect(result.config.auth.bootstrap).toBeUndefined();
  });

  it('creates a bootstrap admin config only when both variables are given', () => {
    const both = parseConfig({ ...base, OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'Admin@Example.com', OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: 'a long password!' });
    expect(both.ok && both.config.auth.bootstrap).toEqual({ email: 'admin@example.com', password: 'a long password!' });
    const half = parseConfig({ ...base, OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'admin@example.com' });
    expect(half.ok).toBe(false);
    const weak = parseConfig({ ...base, OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'admin@example.com', OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: 'short' });
    expect(weak.ok).toBe(false);
  });

  it.each([
    ['OR3_BASIC_AUTH_ACCESS_TTL_SECONDS', 'fifteen', 'whole number'],
    ['OR3_BASIC_AUTH_ACCESS_TTL_SECONDS', '5', 'at least 60'],
    ['OR3_SYNC_RETENTION_SECONDS', '60', 'at least 3600'],
    ['OR3_BASIC_AUTH_REGISTRATION', 'sometimes', 'open, invite or closed'],
    ['OR3_AUTH_AUTO_PROVISION', 'yes', '"true" or "false"'],
    ['OR3_AUTH_OIDC_PROVIDERS', '{not json', 'not valid JSON'],
    ['OR3_AUTH_OIDC_PROVIDERS', '[{"id":"x","issuer":"https://i.example","audience":"a"}]', 'exactly one of jwksUrl or jwks'],
    [
      'OR3_AUTH_OIDC_PROVIDERS',
      '[{"id":"x","issuer":"https://i.example","audience":"a","jwksUrl":"https://i.example/jwks","algorithms":["HS256"]}]',
      'algorithms',
    ],
    ['OR3_RATE_LIMIT_OVERRIDES_JSON', '{"psuh": 5}', 'psuh'],
    ['OR3_STORAGE_ALLOWED_MIME_TYPES', 'image/png,pdf', 'MIME type'],
    ['ENVIRONMENT', 'staging', '"production" or "development"'],
  ])('refuses %s = %s in any environment', (name, value, message) => {
    for (const environment of ['production', 'development']) {
      const overrides: Record<string, unknown> = { ENVIRONMENT: environment, [name]: value };
      const result = parseConfig({ ...base, ...overrides } as Bindings);
      expect(result.ok, `${environment}`).toBe(false);
      if (result.ok) continue;
      const problem = result.problems.find((p) => p.variable === name);
      expect(problem?.message).toContain(message);
    }
  });

  it('parses OIDC providers, normalising audience and defaulting algorithms', () => {
    const providers = [
      {
        id: 'clerk',
        issuer: 'https://clerk.example.com',
        audience: 'or3',
        jwksUrl: 'https://clerk.example.com/.well-known/jwks.json',
        authorizedParties: ['https://app.example.com'],
      },
      {
        id: 'ci',
        issuer: 'https://token.actions.githubusercontent.com',
        audience: ['a', 'b'],
        algorithms: ['RS256'],
        jwks: { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] },
        claims: { repository_owner_id: '1' },
      },
    ];
    const result = parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: JSON.stringify(providers) });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.auth.oidcProviders[0]).toMatchObject({ audience: ['or3'], algorithms: ['RS256'] });
    expect(result.config.auth.oidcProviders[1]?.audience).toEqual(['a', 'b']);
  });

  it('production refuses a GitHub Actions provider without a claim rule', () => {
    const gh = {
      id: 'gh',
      issuer: 'https://token.actions.githubusercontent.com',
      audience: 'or3-ci',
      jwksUrl: 'https://token.actions.githubusercontent.com/.well-known/jwks',
    };
    const bare = parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([gh]) });
    expect(bare.ok).toBe(false);
    if (!bare.ok) expect(bare.problems[0]?.message).toContain('needs "claims"');
    const pinned = parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([{ ...gh, claims: { repository_owner_id: '42' } }]) });
    expect(pinned.ok && pinned.config.auth.oidcProviders[0]?.claims).toEqual({ repository_owner_id: ['42'] });
  });

  it('production refuses an http JWKS URL', () => {
    const providers = [{ id: 'p', issuer: 'https://i.example.com', audience: 'a', jwksUrl: 'http://i.example.com/jwks' }];
    expect(parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: JSON.stringify(providers) }).ok).toBe(false);
  });

  it('defaults and bounds the workspace creation limit and the federated token age', () => {
    const defaults = parseConfig(base);
    expect(defaults.ok && defaults.config.workspaces.createLimitPerHour).toBe(20);
    expect(defaults.ok && defaults.config.auth.oidcMaxTokenAgeSeconds).toBe(86_400);
    const set = parseConfig({ ...base, OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR: '5', OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS: '3600' });
    expect(set.ok && [set.config.workspaces.createLimitPerHour, set.config.auth.oidcMaxTokenAgeSeconds]).toEqual([5, 3600]);
    for (const [name, value] of [
      ['OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR', '0'],
      ['OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR', 'lots'],
      ['OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS', '0'],
      ['OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS', '-1'],
    ]) {
      const result = parseConfig({ ...base, [name!]: value });
      expect(result.ok, `${name}=${value}`).toBe(false);
      if (!result.ok) expect(result.problems[0]?.variable).toBe(name);
    }
  });

  it('takes a per-provider maxTokenAgeSeconds: 0 for no bound, else 60 … 31536000', () => {
    const provider = (maxTokenAgeSeconds: unknown) =>
      JSON.stringify([{ id: 'p', issuer: 'https://i.example.com', audience: 'a', jwksUrl: 'https://i.example.com/jwks', maxTokenAgeSeconds }]);
    for (const ok of [0, 60, 604_800]) {
      const result = parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: provider(ok) });
      expect(result.ok && result.config.auth.oidcProviders[0]?.maxTokenAgeSeconds, String(ok)).toBe(ok);
    }
    for (const bad of [30, -1, 1.5, null, '3600']) expect(parseConfig({ ...base, OR3_AUTH_OIDC_PROVIDERS: provider(bad) }).ok, String(bad)).toBe(false);
  });

  it('requires the R2 S3 credentials together', () => {
    expect(parseConfig({ ...base, R2_ACCOUNT_ID: 'acc' }).ok).toBe(false);
    const all = parseConfig({ ...base, R2_ACCOUNT_ID: 'acc', R2_ACCESS_KEY_ID: 'key', R2_SECRET_ACCESS_KEY: 'secret' });
    expect(all.ok && all.config.storage.s3?.bucketName).toBe('or3-edge-blobs');
  });
});

describe('configuration through the Worker', () => {
  afterEach(() => vi.restoreAllMocks());

  it('a production deployment missing a secret answers every request 503 misconfigured and logs how to fix it', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    for (const path of ['/api/health', '/api/anything', '/']) {
      const res = await apiWithEnv({ OR3_BASIC_AUTH_JWT_SECRET: undefined }, path);
      expect(res.status, path).toBe(503);
      const body = await res.json<{ error: string; message: string }>();
      expect(body.error).toBe('misconfigured');
      expect(body.message).toContain('OR3_BASIC_AUTH_JWT_SECRET');
    }
    const lines = errors.mock.calls.map((args) => JSON.parse(String(args[0])));
    const event = lines.find((l) => l.event === 'config_invalid');
    expect(event).toMatchObject({ variable: 'OR3_BASIC_AUTH_JWT_SECRET' });
    expect(event.fix).toContain('wrangler secret put OR3_BASIC_AUTH_JWT_SECRET');
    expect(lines.some((l) => l.status === 503 && l.path === '/api/health')).toBe(true);
  });

  it('never logs a secret value, even a weak one', async () => {
    const output: string[] = [];
    for (const method of ['log', 'warn', 'error'] as const) {
      vi.spyOn(console, method).mockImplementation((...args) => void output.push(args.join(' ')));
    }
    const res = await apiWithEnv({ OR3_STORAGE_URL_SECRET: 'weak-but-secret-value' }, '/api/health');
    expect(res.status).toBe(503);
    expect(output.join('\n')).toContain('OR3_STORAGE_URL_SECRET');
    expect(output.join('\n')).not.toContain('weak-but-secret-value');
    expect(await res.text()).not.toContain('weak-but-secret-value');
  });

  it('development works with no secrets and warns about the dev secrets', async () => {
    const res = await apiWithEnv(
      { ENVIRONMENT: 'development', OR3_BASIC_AUTH_JWT_SECRET: undefined, OR3_STORAGE_URL_SECRET: undefined },
      '/api/health?deep=true',
    );
    expect(res.status).toBe(200);
    expect((await res.json<{ status: string }>()).status).toBe('ok');
  });
});
