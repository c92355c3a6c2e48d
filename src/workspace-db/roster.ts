/**
 * The workspace's members in its own SQLite (tables made by the object's migrations,
 * drizzle/workspace.ts, like every other table): the authority for who belongs to the workspace and
 * with which role (docs/architecture.md "Members live with their workspace"). Synchronous SQL
 * only: members.ts runs each change inside `transactionSync` together with its outbox entry, so
 * a change and the promise to copy it to D1 and the user's object are one step.
 *
 * - `roster_members`: the members.
 * - `roster_removed`: when a user was last removed, so a late add made in D1 first (an invite
 *   accepted just before the removal, a crash between the two) is not adopted over a newer removal.
 * - `roster_state`: the seed (once, from D1) and the workspace's row as the object knows it.
 * - `roster_outbox`: users whose copies (D1, their user object's list) must still follow.
 */
import type { Role } from '../workspace-records/permissions';
import type { MemberCopyRow, RosterChange, WorkspaceInfo } from '../workspace-records/member-copy';

export type { RosterChange };

export type RosterOutcome = 'ok' | 'not_member' | 'last_owner';

export interface RosterState extends WorkspaceInfo {
  /** Whether D1 has a workspace by this id (an object addressed by a made-up id has no members). */
  present: boolean;
}

export function seeded(sql: SqlStorage): boolean {
  return sql.exec('SELECT 1 FROM roster_state WHERE id = 1').toArray().length > 0;
}

/** Takes D1's copy as the starting point (once in the object's life). */
export function seed(sql: SqlStorage, info: WorkspaceInfo | null, members: MemberCopyRow[], now: number) {
  for (const m of members) {
    sql.exec('INSERT OR IGNORE INTO roster_members (user_id, role, created_at, updated_at) VALUES (?, ?, ?, ?)', m.userId, m.role, m.createdAt, m.updatedAt);
  }
  writeState(sql, info, now);
}

/** The workspace's row as D1 has it (seed, creation, rename, deletion, restore, repair). */
export function writeState(sql: SqlStorage, info: WorkspaceInfo | null, now: number) {
  sql.exec(
    `INSERT INTO roster_state (id, seeded_at, present, deleted, name, description, created_at) VALUES (1, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET present = excluded.present, deleted = excluded.deleted, name = excluded.name,
         description = excluded.description, created_at = excluded.created_at`,
    now,
    info ? 1 : 0,
    info?.deleted ? 1 : 0,
    info?.name ?? '',
    info?.description ?? null,
    info?.createdAt ?? 0,
  );
}

export function readState(sql: SqlStorage): RosterState {
  const row = sql
    .exec<{ present: number; deleted: number; name: string; description: string | null; created_at: number }>(
      'SELECT present, deleted, name, description, created_at FROM roster_state WHERE id = 1',
    )
    .toArray()[0];
  if (!row) return { present: false, deleted: true, name: '', description: null, createdAt: 0 };
  return { present: row.present === 1, deleted: row.deleted === 1, name: row.name, description: row.description, createdAt: row.created_at };
}

/** A member's role in a live workspace, or null (not a member, or the workspace is deleted or unknown). */
export function roleOf(sql: SqlStorage, userId: string): Role | null {
  const state = readState(sql);
  if (!state.present || state.deleted) return null;
  return memberRole(sql, userId);
}

/** A member's stored role, whatever the workspace's state. */
export function memberRole(sql: SqlStorage, userId: string): Role | null {
  return sql.exec<{ role: Role }>('SELECT role FROM roster_members WHERE user_id = ?', userId).toArray()[0]?.role ?? null;
}

export function memberRow(sql: SqlStorage, userId: string): { role: Role; createdAt: number } | null {
  const row = sql.exec<{ role: Role; created_at: number }>('SELECT role, created_at FROM roster_members WHERE user_id = ?', userId).toArray()[0];
  return row ? { role: row.role, createdAt: row.created_at } : null;
}

export function allMembers(sql: SqlStorage): { userId: string; role: Role }[] {
  return sql
    .exec<{ user_id: string; role: Role }>('SELECT user_id, role FROM roster_members ORDER BY created_at, user_id')
    .toArray()
    .map((r) => ({ userId: r.user_id, role: r.role }));
}

export function removedAt(sql: SqlStorage, userId: string): number | null {
  return sql.exec<{ removed_at: number }>('SELECT removed_at FROM roster_removed WHERE user_id = ?', userId).toArray()[0]?.removed_at ?? null;
}

const owners = (sql: SqlStorage) => sql.exec<{ n: number }>("SELECT count(*) AS n FROM roster_members WHERE role = 'owner'").one().n;

/**
 * Applies a change with the workspace's invariant (it keeps at least one owner), and queues the
 * user for the copies when anything changed. Returns the outcome and whether it changed anything.
 */
export function apply(sql: SqlStorage, change: RosterChange, now: number): { outcome: RosterOutcome; changed: boolean } {
  const current = memberRole(sql, change.userId);
  const ok = (changed: boolean) => {
    if (changed) enqueue(sql, [change.userId], true, now);
    return { outcome: 'ok' as const, changed };
  };
  if (change.op === 'remove') {
    if (!current) return { outcome: 'not_member', changed: false };
    if (current === 'owner' && owners(sql) <= 1) return { outcome: 'last_owner', changed: false };
    sql.exec('DELETE FROM roster_members WHERE user_id = ?', change.userId);
    sql.exec(
      'INSERT INTO roster_removed (user_id, removed_at) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET removed_at = excluded.removed_at',
      change.userId,
      now,
    );
    return ok(true);
  }
  if (change.op === 'adopt') {
    if (current) {
      // Already a member (the object seeded after D1's write): the copies are told all the same.
      enqueue(sql, [change.userId], true, now);
      return { outcome: 'ok', changed: false };
    }
    const removed = removedAt(sql, change.userId);
    if (removed !== null && removed >= change.since) return { outcome: 'not_member', changed: false };
    insert(sql, change.userId, change.role, change.since, now);
    return ok(true);
  }
  if (!current) {
    if (change.op === 'set') return { outcome: 'not_member', changed: false };
    insert(sql, change.userId, change.role, change.createdAt ?? now, now);
    return ok(true);
  }
  if (current === change.role) return ok(false);
  if (current === 'owner' && owners(sql) <= 1) return { outcome: 'last_owner', changed: false };
  sql.exec('UPDATE roster_members SET role = ?, updated_at = ? WHERE user_id = ?', change.role, now, change.userId);
  return ok(true);
}

function insert(sql: SqlStorage, userId: string, role: Role, createdAt: number, now: number) {
  sql.exec('INSERT INTO roster_members (user_id, role, created_at, updated_at) VALUES (?, ?, ?, ?)', userId, role, createdAt, now);
}

/** Queues users for the copies; `copy`: D1's copy too (a rename or deletion only tells the user objects). */
export function enqueue(sql: SqlStorage, userIds: string[], copy: boolean, now: number) {
  for (const id of userIds) {
    sql.exec(
      `INSERT INTO roster_outbox (user_id, copy, queued_at) VALUES (?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET copy = max(copy, excluded.copy), queued_at = max(excluded.queued_at, roster_outbox.queued_at + 1)`,
      id,
      copy ? 1 : 0,
      now,
    );
  }
}

export interface OutboxEntry {
  userId: string;
  copy: boolean;
  queuedAt: number;
}

export function pending(sql: SqlStorage, limit: number): OutboxEntry[] {
  return sql
    .exec<{ user_id: string; copy: number; queued_at: number }>('SELECT user_id, copy, queued_at FROM roster_outbox ORDER BY queued_at LIMIT ?', limit)
    .toArray()
    .map((r) => ({ userId: r.user_id, copy: r.copy === 1, queuedAt: r.queued_at }));
}

/** Clears delivered entries, unless a newer change queued the user again meanwhile. */
export function delivered(sql: SqlStorage, entries: OutboxEntry[]) {
  for (const e of entries) sql.exec('DELETE FROM roster_outbox WHERE user_id = ? AND queued_at = ?', e.userId, e.queuedAt);
}

export function outboxSize(sql: SqlStorage): number {
  return sql.exec<{ n: number }>('SELECT count(*) AS n FROM roster_outbox').one().n;
}
