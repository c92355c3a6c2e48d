// Applies the D1 migrations before each test file (idempotent), exactly as `wrangler d1
// migrations apply` would in production.
import { applyD1Migrations } from 'cloudflare:test';
import { env } from 'cloudflare:workers';

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
