/**
 * What authorization needs to know about the user, kept in their object (docs/architecture.md
 * "Sessions live with their user"): whether the account exists and is disabled, its token
 * version and the deployment-admin flag. D1's users row stays the authority (sign-in, the admin
 * guards and search read it there); this is its copy, loaded with the user's legacy sessions on
 * the object's first use and re-read from D1 whenever a write changes it (`reloadFacts`, which
 * every such write path calls after its D1 write). And the workspaces whose objects cache these
 * facts, so that a change reaches them (the watchers).
 */

export const FACTS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY CHECK (id = 1), present INTEGER NOT NULL, token_version INTEGER NOT NULL,
    disabled INTEGER NOT NULL, is_admin INTEGER NOT NULL, loaded_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS watchers (workspace_id TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS profile (
    id INTEGER PRIMARY KEY CHECK (id = 1), email TEXT, display_name TEXT, active_workspace_id TEXT, loaded_at INTEGER NOT NULL);`;

/**
 * What the session endpoint and "my workspaces" show of the user (D1's users row stays the
 * authority, as for the facts): copied with the facts and re-read by the same `reloadFacts`.
 * Objects made before the profile was kept load it on first need (once).
 */
export interface UserProfile {
  email: string | null;
  displayName: string | null;
  activeWorkspaceId: string | null;
}

export function readProfile(sql: SqlStorage): UserProfile | undefined {
  const row = sql
    .exec<{ email: string | null; display_name: string | null; active_workspace_id: string | null }>(
      'SELECT email, display_name, active_workspace_id FROM profile WHERE id = 1',
    )
    .toArray()[0];
  return row ? { email: row.email, displayName: row.display_name, activeWorkspaceId: row.active_workspace_id } : undefined;
}

export function writeProfile(sql: SqlStorage, row: FactsRow, now: number) {
  sql.exec(
    `INSERT INTO profile (id, email, display_name, active_workspace_id, loaded_at) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
         active_workspace_id = excluded.active_workspace_id, loaded_at = excluded.loaded_at`,
    row?.email ?? null,
    row?.display_name ?? null,
    row?.active_workspace_id ?? null,
    now,
  );
}

export interface UserFacts {
  /** False when D1 has no such user (deleted, or never existed): nothing of theirs is live. */
  present: boolean;
  tokenVersion: number;
  disabled: boolean;
  isAdmin: boolean;
}

/** The D1 users row's fields these facts come from (null: no such user). */
export type FactsRow = {
  token_version: number;
  disabled_at: number | null;
  is_admin: number;
  email: string | null;
  display_name: string | null;
  active_workspace_id: string | null;
} | null;

export const factsOf = (row: FactsRow): UserFacts =>
  row ? { present: true, tokenVersion: row.token_version, disabled: row.disabled_at !== null, isAdmin: row.is_admin === 1 } : ABSENT;

const ABSENT: UserFacts = { present: false, tokenVersion: -1, disabled: true, isAdmin: false };

/** The stored facts; undefined until the object's first load. */
export function readFacts(sql: SqlStorage): UserFacts | undefined {
  const row = sql
    .exec<{ present: number; token_version: number; disabled: number; is_admin: number }>(
      'SELECT present, token_version, disabled, is_admin FROM facts WHERE id = 1',
    )
    .toArray()[0];
  return row ? { present: row.present === 1, tokenVersion: row.token_version, disabled: row.disabled === 1, isAdmin: row.is_admin === 1 } : undefined;
}

export function writeFacts(sql: SqlStorage, facts: UserFacts, now: number) {
  sql.exec(
    `INSERT INTO facts (id, present, token_version, disabled, is_admin, loaded_at) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET present = excluded.present, token_version = excluded.token_version,
         disabled = excluded.disabled, is_admin = excluded.is_admin, loaded_at = excluded.loaded_at`,
    facts.present ? 1 : 0,
    facts.tokenVersion,
    facts.disabled ? 1 : 0,
    facts.isAdmin ? 1 : 0,
    now,
  );
}

/**
 * How long a workspace stays a watcher after its last fill. Its cache keeps a fact at most
 * OR3_AUTH_CACHE_TTL_SECONDS (≤ 300 s) and an open socket re-checks within that time, which
 * fills again; a day is far beyond both.
 */
const WATCH_MS = 24 * 3600 * 1000;
/** Watchers kept per user; past it the least recently seen go (their caches expire on their own, ≤ 300 s). */
const MAX_WATCHERS = 1_000;

/** Records that `workspaceId` caches this user's facts (called on every fill: at most one per cache lifetime). */
export function watch(sql: SqlStorage, workspaceId: string, now: number) {
  sql.exec('INSERT INTO watchers (workspace_id, seen_at) VALUES (?, ?) ON CONFLICT (workspace_id) DO UPDATE SET seen_at = excluded.seen_at', workspaceId, now);
}

/** The workspaces to tell about a change (and the stale ones forgotten). */
export function watchers(sql: SqlStorage, now: number): string[] {
  sql.exec('DELETE FROM watchers WHERE seen_at < ?', now - WATCH_MS);
  sql.exec('DELETE FROM watchers WHERE workspace_id IN (SELECT workspace_id FROM watchers ORDER BY seen_at DESC LIMIT -1 OFFSET ?)', MAX_WATCHERS);
  return sql
    .exec<{ workspace_id: string }>('SELECT workspace_id FROM watchers')
    .toArray()
    .map((r) => r.workspace_id);
}
