import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

/** The Workers pool with the project's wrangler.toml and these bindings over it. */
const workerPool = async (bindings: Record<string, string> = {}) =>
  cloudflareTest({
    wrangler: { configPath: './wrangler.toml' },
    miniflare: {
      bindings: {
        TEST_MIGRATIONS: await readD1Migrations('./migrations/d1'),
        // wrangler also loads the committed, local-only .env (ENVIRONMENT=development): the
        // suite tests production behaviour, so say production here, where it wins.
        ENVIRONMENT: 'production',
        OR3_BASIC_AUTH_JWT_SECRET: 'test-only-jwt-secret-0123456789abcdef0123456789abcdef',
        OR3_STORAGE_URL_SECRET: 'test-only-url-secret-0123456789abcdef0123456789abcdef',
        OR3_ALLOWED_ORIGINS: 'https://app.example.com',
        // Most tests register users freely; invite and closed modes are tested explicitly.
        OR3_BASIC_AUTH_REGISTRATION: 'open',
        // Failed sign-ins wait for a fixed answer time (1 s in production); the timing
        // test sets the real value, the rest of the suite need not wait that long.
        OR3_BASIC_AUTH_FAILED_SIGN_IN_MS: '100',
        ...bindings,
      },
    },
  });

/**
 * Workers tests run inside workerd with the project's wrangler.toml: the real Worker, Durable
 * Objects, D1 and R2. The bindings of `workerPool` turn the production defaults into a valid production
 * configuration (test-only secrets), so the suite exercises production behaviour; tests that
 * need development mode pass a modified env to the Worker. The workspace's object reads its own
 * env, so tests of its quotas and limits run in their own project (`worker-limits`).
 */
export default defineConfig(async () => ({
  test: {
    // The Worker writes one JSON line per request; keep test output readable unless asked.
    onConsoleLog: (log: string) => (process.env.TEST_LOGS || !log.trimStart().startsWith('{"level"') ? undefined : false),
    projects: [
      {
        plugins: [await workerPool()],
        test: {
          name: 'worker',
          include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
          exclude: ['test/limits/**', 'test/rates/**'],
          // Above vitest's 5 s default: on a shared 2-core CI machine a few tests that sign in
          // several users or resume multipart uploads have come within a second of it. A timeout
          // is not a speed assertion (speed is measured by `npm run bench`).
          testTimeout: 20_000,
          setupFiles: ['./test/setup/apply-migrations.ts'],
        },
      },
      {
        // The workspace's object reads its quotas and limits from its own env (src/workspace-db/settings.ts),
        // which a test cannot change per request: the tests of those limits run here, with small ones.
        plugins: [
          await workerPool({
            OR3_STORAGE_WORKSPACE_QUOTA_BYTES: '1000',
            OR3_SYNC_WORKSPACE_QUOTA_BYTES: '8192',
            OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE: '3',
            // A lost invalidation's bound (test/limits/revocation-bounds.test.ts) in a second, not a minute.
            OR3_AUTH_CACHE_TTL_SECONDS: '1',
          }),
        ],
        test: {
          name: 'worker-limits',
          include: ['test/limits/**/*.test.ts'],
          testTimeout: 20_000,
          setupFiles: ['./test/setup/apply-migrations.ts'],
        },
      },
      {
        // Sync's per-user rate limits, which the object reads from its own env too (small ones:
        // the default hundreds per minute would take a test hundreds of requests to reach).
        plugins: [await workerPool({ OR3_RATE_LIMIT_OVERRIDES_JSON: '{"push": 2, "pull": 2, "updateCursor": 1}' })],
        test: {
          name: 'worker-rates',
          include: ['test/rates/**/*.test.ts'],
          testTimeout: 20_000,
          setupFiles: ['./test/setup/apply-migrations.ts'],
        },
      },
      {
        // The browser SDK in Node: fake-indexeddb for IndexedDB, and the real Worker started by
        // wrangler's test harness in each test file (client/test/harness.ts).
        test: {
          name: 'client',
          include: ['client/test/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        // The OR3 importer (tools/or3-import) as a Node CLI, against the real Worker started by
        // wrangler's test harness, with a fixture OR3 deployment it builds on disk; and the deploy
        // script (scripts/deploy.mjs) against a stand-in for the wrangler executable.
        test: {
          name: 'tools',
          include: ['tools/**/*.test.ts', 'scripts/**/*.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The demo app in Debian's Chromium (playwright-core) against the Worker serving it.
        test: {
          name: 'e2e',
          include: ['demo/test/**/*.test.ts'],
          // Builds demo/dist from the current source first, so the browser never tests a stale build.
          globalSetup: ['./demo/test/build.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
}));
