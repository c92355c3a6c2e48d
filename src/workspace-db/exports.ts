/**
 * The pages an export and a fork read from the workspace database (docs/operations.md "Export"):
 * the change log after a version, and the current state after a key.
 */
import type { ArchivedEntry } from './history-archive';
import { headVersion, prunedThrough } from './meta';
import { snapshotPage, type SnapshotItem } from './reads';
import { changeLogRows } from './retention';

/**
 * Live change-log entries in the next `limit` versions after `after` (other users'
 * notifications excluded; `userId` null: everyone's, for a fork), with the last version scanned
 * and whether that reached the head.
 */
export function exportLog(sql: SqlStorage, after: number, limit: number, userId: string | null): { entries: ArchivedEntry[]; through: number; done: boolean } {
  const start = Math.max(after, prunedThrough(sql));
  const head = headVersion(sql);
  // Start at the next logged version, so the gap a point-in-time restore leaves costs one page.
  const from = sql.exec<{ v: number | null }>('SELECT min(server_version) AS v FROM change_log WHERE server_version > ?', start).one().v ?? head + 1;
  const through = Math.min(head, from + limit - 1);
  const entries =
    from > through ? [] : changeLogRows(sql, from, through).filter((e) => userId === null || e.tableName !== 'notifications' || e.userId === userId);
  return { entries, through: Math.max(through, after), done: through >= head };
}

/** One page of the current state for an export. */
export function exportState(
  sql: SqlStorage,
  after: [string, string] | null,
  pageSize: number,
  userId: string,
): { items: SnapshotItem[]; next: [string, string] | null } {
  const page = snapshotPage(sql, { after, pageSize, userId });
  return { items: JSON.parse(page.itemsJson) as SnapshotItem[], next: page.next };
}
