/**
 * The workspace database's small key/value facts (`meta`): the version counter, the GC floors,
 * the running byte totals and the snapshot-token key. Every room of the workspace database
 * reads and moves them through here.
 */
import { randomHex } from '../crypto';

export function getMeta(sql: SqlStorage, key: string): string | null {
  const row = sql.exec<{ value: string }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0];
  return row ? row.value : null;
}

export function setMeta(sql: SqlStorage, key: string, value: string | number) {
  sql.exec('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', key, String(value));
}

export function deleteMeta(sql: SqlStorage, key: string) {
  sql.exec('DELETE FROM meta WHERE key = ?', key);
}

/** The workspace's version counter: the highest allocated server_version. */
export const headVersion = (sql: SqlStorage) => Number(getMeta(sql, 'server_version') ?? 0);
/** Everything at or below this version may have been removed from the change log by GC. */
export const prunedThrough = (sql: SqlStorage) => Number(getMeta(sql, 'pruned_through') ?? 0);
/**
 * Bytes of sync data stored (change log + materialized rows, by `entryBytes`), kept as a
 * running total: every write and every GC deletion moves it, so the quota check is O(1).
 */
export const syncBytes = (sql: SqlStorage) => Number(getMeta(sql, 'sync_bytes') ?? 0);
export const addSyncBytes = (sql: SqlStorage, delta: number) => {
  if (delta !== 0) setMeta(sql, 'sync_bytes', syncBytes(sql) + delta);
};
/** The highest `changed_version` of a collected tombstone: pulls from below it need a snapshot. */
export const collectedThrough = (sql: SqlStorage) => Number(getMeta(sql, 'collected_through') ?? 0);

/** The workspace's key for sealing snapshot page tokens, made on first use. */
export function snapshotKey(sql: SqlStorage): string {
  let key = getMeta(sql, 'snapshot_key');
  if (!key) {
    key = randomHex(32);
    setMeta(sql, 'snapshot_key', key);
  }
  return key;
}

/** Number of schema migrations applied to this database (the deep health check's proof of life). */
export const migrationsApplied = (sql: SqlStorage) => sql.exec<{ n: number }>('SELECT count(*) AS n FROM __drizzle_migrations').one().n;

/** Version ranges point-in-time restores discarded (recovery.ts `markRestored`). */
export const restoredRanges = (sql: SqlStorage): [number, number][] => JSON.parse(getMeta(sql, 'resnapshot_ranges') ?? '[]');

/**
 * Whether a cursor saw changes a point-in-time restore discarded (see `markRestored`), or is
 * beyond anything this workspace has (a restore not finished yet): either way, re-bootstrap.
 */
export function sawDiscarded(sql: SqlStorage, cursor: number): boolean {
  if (cursor > headVersion(sql)) return true;
  return restoredRanges(sql).some(([after, through]) => cursor > after && cursor <= through);
}
