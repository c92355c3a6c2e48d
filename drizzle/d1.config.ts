import { defineConfig } from 'drizzle-kit';

/** D1 migrations: `npm run db:generate`, applied by `wrangler d1 migrations apply DB`. */
export default defineConfig({
  dialect: 'sqlite',
  schema: './drizzle/d1.ts',
  out: './migrations/d1',
});
