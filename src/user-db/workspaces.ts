/**
 * The user's workspaces with their roles, kept in the user's object (docs/architecture.md
 * "Members live with their workspace"): what "my workspaces" and the session endpoint answer,
 * with no D1 query. The workspaces' objects are the authority; each membership change (and each
 * rename, deletion, restore) is pushed here by the workspace's object after it wrote it
 * (`workspaceChanged`). Seeded from D1's membership copy once, on the list's first use, so users
 * keep their workspaces through the upgrade. Synchronous SQL only.
 */
import type { Role } from '../workspace-records/permissions';

export const WORKSPACES_SCHEMA = `
  CREATE TABLE IF NOT EXISTS my_workspaces (
    workspace_id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    created_at INTEGER NOT NULL, deleted INTEGER NOT NULL, updated_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS my_workspaces_state (id INTEGER PRIMARY KEY CHECK (id = 1), seeded_at INTEGER NOT NULL);`;

/** Workspaces one user's list keeps (live and deleted); far above any real user's. */
export const MAX_WORKSPACES = 10_000;

/** What a workspace's object tells a member's object: the membership (null: none) and the workspace's row. */
export interface WorkspaceNotice {
  workspaceId: string;
  role: Role | null;
  name: string;
  description: string | null;
  createdAt: number;
  deleted: boolean;
}

export interface MyWorkspace {
  id: string;
  name: string;
  description: string | null;
  role: Role;
  createdAt: number;
}

export function listSeeded(sql: SqlStorage): boolean {
  return sql.exec('SELECT 1 FROM my_workspaces_state WHERE id = 1').toArray().length > 0;
}

/** Takes D1's copy (once); a notice that arrived first wins over it. */
export function seedList(sql: SqlStorage, rows: MyWorkspace[], now: number) {
  for (const w of rows) {
    sql.exec(
      'INSERT OR IGNORE INTO my_workspaces (workspace_id, role, name, description, created_at, deleted, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?)',
      w.id,
      w.role,
      w.name,
      w.description,
      w.createdAt,
      now,
    );
  }
  sql.exec('INSERT OR IGNORE INTO my_workspaces_state (id, seeded_at) VALUES (1, ?)', now);
}

/** Applies a workspace object's notice: the membership as it now stands. */
export function applyNotice(sql: SqlStorage, notice: WorkspaceNotice, now: number) {
  if (!notice.role) {
    sql.exec('DELETE FROM my_workspaces WHERE workspace_id = ?', notice.workspaceId);
    return;
  }
  sql.exec(
    `INSERT INTO my_workspaces (workspace_id, role, name, description, created_at, deleted, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (workspace_id) DO UPDATE SET role = excluded.role, name = excluded.name, description = excluded.description,
         created_at = excluded.created_at, deleted = excluded.deleted, updated_at = excluded.updated_at`,
    notice.workspaceId,
    notice.role,
    notice.name,
    notice.description,
    notice.createdAt,
    notice.deleted ? 1 : 0,
    now,
  );
}

/** The user's live workspaces, newest first (the order D1's list used). */
export function liveWorkspaces(sql: SqlStorage): MyWorkspace[] {
  return sql
    .exec<{ workspace_id: string; role: Role; name: string; description: string | null; created_at: number }>(
      'SELECT workspace_id, role, name, description, created_at FROM my_workspaces WHERE deleted = 0 ORDER BY created_at DESC, workspace_id DESC LIMIT ?',
      MAX_WORKSPACES,
    )
    .toArray()
    .map((r) => ({ id: r.workspace_id, name: r.name, description: r.description, role: r.role, createdAt: r.created_at }));
}

/** The user's membership of one live workspace, or null. */
export function membershipIn(sql: SqlStorage, workspaceId: string): { name: string; role: Role } | null {
  return (
    sql.exec<{ name: string; role: Role }>('SELECT name, role FROM my_workspaces WHERE workspace_id = ? AND deleted = 0', workspaceId).toArray()[0] ?? null
  );
}

/** Every workspace the list names, deleted or not (the user repair route's starting point). */
export function listedWorkspaceIds(sql: SqlStorage): string[] {
  return sql
    .exec<{ workspace_id: string }>('SELECT workspace_id FROM my_workspaces')
    .toArray()
    .map((r) => r.workspace_id);
}
