/**
 * Retention GC of the workspace database (docs/sync.md "GC and retention"): change-log entries
 * and tombstones older than the retention and at or below every live device cursor. Change-log
 * entries are archived to R2 before they are deleted (docs/operations.md), so history is never
 * lost. Each step runs in its own bounded transaction.
 */
import { archiveRows, type ArchivedEntry } from './history-archive';
import { recordAudit } from '../audit/emit';
import { loadConfig } from '../config';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import { collectBlobs } from './blob-objects';
import { SYNC_LIMITS } from '../../protocol/rules';
import { addSyncBytes, collectedThrough, headVersion, prunedThrough, setMeta } from './meta';

/**
 * The version GC may delete through: device cursors idle past retention are dropped first, then
 * nothing above the slowest remaining cursor may go (with no devices, nothing above the head).
 */
function safeThrough(sql: SqlStorage, cutoff: number): number {
  sql.exec('DELETE FROM device_cursors WHERE updated_at < ?', cutoff);
  const min = sql.exec<{ v: number | null }>('SELECT min(version) AS v FROM device_cursors').one().v;
  return min ?? headVersion(sql);
}

/**
 * The highest version logged before `cutoff`. The log holds the versions after the GC floor up
 * to the head, allocated in time order (with at most the gap a point-in-time restore leaves, see
 * `markRestored`), so a binary search on the primary key finds it in ~20 index seeks instead of a
 * scan: each probe reads the first logged version at or after `mid`.
 */
function lastVersionBefore(sql: SqlStorage, cutoff: number): number {
  let lo = prunedThrough(sql); // known: everything at or below is gone (treated as old)
  let hi = headVersion(sql);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const row = sql
      .exec<{ v: number; created_at: number }>(
        'SELECT server_version AS v, created_at FROM change_log WHERE server_version >= ? ORDER BY server_version LIMIT 1',
        mid,
      )
      .toArray()[0];
    if (row && row.v <= hi && row.created_at < cutoff) lo = row.v;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The next range of change-log versions GC may remove: older than the cutoff, at or below every
 * live cursor, at most `chunk` of them. Null when there is nothing to remove.
 */
export function prunableRange(sql: SqlStorage, cutoff: number, chunk: number = SYNC_LIMITS.gcChunk): { from: number; to: number; last: boolean } | null {
  const floor = prunedThrough(sql);
  const through = Math.min(safeThrough(sql, cutoff), lastVersionBefore(sql, cutoff));
  if (through <= floor) return null;
  const to = Math.min(through, floor + chunk);
  return { from: floor + 1, to, last: to === through };
}

/** The full change-log rows of a version range, for the archive. */
export function changeLogRows(sql: SqlStorage, from: number, to: number): ArchivedEntry[] {
  return sql
    .exec<{
      server_version: number;
      op_id: string;
      table_name: string;
      pk: string;
      op: 'put' | 'delete';
      payload: string | null;
      clock: number;
      hlc: string;
      device_id: string;
      user_id: string;
      fingerprint: string;
      created_at: number;
    }>('SELECT * FROM change_log WHERE server_version BETWEEN ? AND ? ORDER BY server_version', from, to)
    .toArray()
    .map((r) => ({
      serverVersion: r.server_version,
      opId: r.op_id,
      tableName: r.table_name,
      pk: r.pk,
      op: r.op,
      payload: r.payload === null ? null : JSON.parse(r.payload),
      clock: r.clock,
      hlc: r.hlc,
      deviceId: r.device_id,
      userId: r.user_id,
      fingerprint: r.fingerprint,
      createdAt: r.created_at,
    }));
}

/** Deletes the change log through `to` and moves the GC floor there; returns how many went. */
export function pruneThrough(sql: SqlStorage, to: number): number {
  if (to <= prunedThrough(sql)) return 0;
  // rowsWritten would also count index entries, so count first.
  const gone = sql
    .exec<{ n: number; bytes: number }>('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM change_log WHERE server_version <= ?', to)
    .one();
  sql.exec('DELETE FROM change_log WHERE server_version <= ?', to);
  setMeta(sql, 'pruned_through', to);
  addSyncBytes(sql, -gone.bytes);
  return gone.n;
}

/**
 * Deletes tombstones older than the cutoff whose last change every live cursor has seen, and
 * raises the pull floor (`collected_through`) to the newest of them: a device below it could
 * not learn of those deletes from a pull any more.
 */
export function gcTombstones(sql: SqlStorage, cutoff: number, chunk: number = SYNC_LIMITS.gcChunk): { deleted: number; done: boolean } {
  const safe = safeThrough(sql, cutoff);
  const victims = sql
    .exec<{ id: number; v: number; size: number }>(
      'SELECT rowid AS id, changed_version AS v, size FROM rows WHERE deleted = 1 AND deleted_at < ? AND changed_version <= ? LIMIT ?',
      cutoff,
      safe,
      chunk,
    )
    .toArray();
  for (let i = 0; i < victims.length; i += 90) {
    const ids = victims.slice(i, i + 90).map((r) => r.id);
    sql.exec(`DELETE FROM rows WHERE rowid IN (${ids.map(() => '?').join(', ')})`, ...ids);
  }
  const newest = victims.reduce((max, r) => Math.max(max, r.v), 0);
  if (newest > collectedThrough(sql)) setMeta(sql, 'collected_through', newest);
  addSyncBytes(sql, -victims.reduce((sum, r) => sum + r.size, 0));
  return { deleted: victims.length, done: victims.length < chunk };
}

export interface GcRequest {
  kind: 'tombstones' | 'change-log';
  retentionSeconds: number;
}

/** GC asked for by a route (`POST /api/sync/gc-*`): runs it and logs what it deleted. */
export async function collectOnRequest(
  storage: DurableObjectStorage,
  bucket: R2Bucket,
  caller: { workspaceId: string; userId: string },
  input: GcRequest,
): Promise<number> {
  const deletedCount =
    input.kind === 'tombstones'
      ? collectTombstones(storage, input.retentionSeconds)
      : (await collectChangeLog(storage, bucket, caller.workspaceId, input.retentionSeconds)).deleted;
  logEvent('info', 'sync_gc', {
    workspaceId: caller.workspaceId,
    userId: caller.userId,
    kind: input.kind,
    retentionSeconds: input.retentionSeconds,
    deletedCount,
  });
  return deletedCount;
}

/** Tombstone GC in bounded transactions until there is nothing left to collect. */
export function collectTombstones(storage: DurableObjectStorage, retentionSeconds: number): number {
  const cutoff = Date.now() - retentionSeconds * 1000;
  let total = 0;
  for (;;) {
    const step = storage.transactionSync(() => gcTombstones(storage.sql, cutoff));
    total += step.deleted;
    if (step.done) return total;
  }
}

/**
 * Change-log GC: each eligible range is archived to R2 first and deleted only once the archive
 * write succeeded. An R2 failure leaves the rows in place (the next run retries) and is reported
 * as `archived: false`. Runs of one object are chained, never overlapping.
 */
export function collectChangeLog(
  storage: DurableObjectStorage,
  bucket: R2Bucket,
  workspaceId: string,
  retentionSeconds: number,
): Promise<{ deleted: number; archived: boolean }> {
  const run = (archiving.get(storage) ?? Promise.resolve()).then(() => archiveAndPrune(storage, bucket, workspaceId, retentionSeconds));
  archiving.set(
    storage,
    run.catch(() => undefined),
  );
  return run;
}

/** Each object's archiving run in flight: runs await R2, which lets other events in, so they are chained (manifests stay consistent). */
const archiving = new WeakMap<DurableObjectStorage, Promise<unknown>>();

async function archiveAndPrune(
  storage: DurableObjectStorage,
  bucket: R2Bucket,
  workspaceId: string,
  retentionSeconds: number,
): Promise<{ deleted: number; archived: boolean }> {
  const cutoff = Date.now() - retentionSeconds * 1000;
  let deleted = 0;
  for (;;) {
    const range = prunableRange(storage.sql, cutoff);
    if (!range) return { deleted, archived: true };
    const rows = changeLogRows(storage.sql, range.from, range.to);
    try {
      await archiveRows(bucket, workspaceId, rows);
    } catch (err) {
      logEvent('error', 'archive_failed', { workspaceId, from: range.from, to: range.to, message: err instanceof Error ? err.message : String(err) });
      return { deleted, archived: false };
    }
    deleted += storage.transactionSync(() => pruneThrough(storage.sql, range.to));
    if (range.last) return { deleted, archived: true };
  }
}

/** Whether the alarm still has anything to collect (log entries, tombstones, or blobs). */
const hasCollectable = (sql: SqlStorage) =>
  sql.exec<{ n: number }>('SELECT (SELECT count(*) FROM change_log) + (SELECT count(*) FROM rows WHERE deleted = 1) + (SELECT count(*) FROM blobs) AS n').one()
    .n > 0;

/**
 * The object's alarm: retention GC with OR3_SYNC_RETENTION_SECONDS, then the same blob GC as
 * `POST /api/storage/gc/run` (no cooldown). Idempotent: a retry deletes nothing twice. Returns
 * whether anything is left to collect (the alarm is then re-armed).
 */
export async function runRetention(storage: DurableObjectStorage, env: Bindings, workspaceId: string | undefined): Promise<boolean> {
  const config = loadConfig(env);
  if (!config.ok) {
    logEvent('error', 'sync_gc_skipped', { reason: 'configuration invalid' });
    return false;
  }
  const retention = config.config.sync.retentionSeconds;
  const tombstones = collectTombstones(storage, retention);
  const changeLog = workspaceId ? (await collectChangeLog(storage, env.BLOBS, workspaceId, retention)).deleted : 0;
  logEvent('info', 'sync_gc', { trigger: 'alarm', retentionSeconds: retention, tombstones, changeLog });
  if (tombstones + changeLog > 0) await recordAudit(env, 'sync.gc.run', { trigger: 'alarm', workspaceId, retentionSeconds: retention, tombstones, changeLog });
  if (workspaceId) {
    const result = await collectBlobs(storage, env.BLOBS, workspaceId, {
      retentionSeconds: config.config.storage.gcRetentionSeconds,
      limit: 100,
      cooldownMs: 0,
    });
    if (result.ok && result.deleted_count > 0)
      await recordAudit(env, 'storage.gc.run', { trigger: 'alarm', workspaceId, deleted: result.deleted_count, status: result.status });
  }
  return hasCollectable(storage.sql);
}
