// Test-only bindings added in vitest.config.ts.
declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import('cloudflare:test').D1Migration[];
    OR3_BASIC_AUTH_JWT_SECRET: string;
    OR3_STORAGE_URL_SECRET: string;
  }
}
