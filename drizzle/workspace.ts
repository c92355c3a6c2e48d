/**
 * The workspace Durable Object's SQLite schema. One database per workspace, so isolation
 * between workspaces holds by construction. The sync feature grows this schema; generate SQL
 * with `npm run db:generate:do` and never edit an applied migration.
 */
import { sqliteTable, text } from 'drizzle-orm/sqlite-core';

/** Small key/value facts about the workspace (its id, counters, settings). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});
