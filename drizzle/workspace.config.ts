import { defineConfig } from 'drizzle-kit';

/** Durable Object migrations: a bundle (migrations.js) the object applies in its constructor. */
export default defineConfig({
  dialect: 'sqlite',
  driver: 'durable-sqlite',
  schema: './drizzle/workspace.ts',
  out: './migrations/do',
});
