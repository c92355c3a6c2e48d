/**
 * Blob bookkeeping inside the workspace database (docs/storage.md): committed blobs, exact quota
 * usage, reference counts and GC selection. Synchronous, called inside `transactionSync`, so two
 * commits can never both squeeze past the quota and a delete cannot race a commit.
 *
 * References are `file_refs` (derived by push from live messages and posts); `file_meta` rows
 * come from `rows`.
 */
import { logEvent } from '../http/logger';
import type { Failure } from '../errors';
import { getMeta, setMeta } from './meta';
import { consumeIntent, reservedBytes } from './intents';

/** Derived reference count of a blob: live messages and posts that list it in file_hashes. */
export function refCount(sql: SqlStorage, hash: string): number {
  return sql.exec<{ n: number }>('SELECT count(*) AS n FROM file_refs WHERE hash = ?', hash).one().n;
}

export interface CommitInput {
  hash: string;
  sizeBytes: number;
  mimeType: string;
  storageKey: string;
  name: string | null;
  kind: string | null;
  /** The upload intent the commit names (docs/api.md "Upload intents"); clients that predate intents send none. */
  intentId?: string;
}

export type CommitOutcome = { ok: true; charged: number } | Failure;

export const usedBytes = (sql: SqlStorage) => Number(getMeta(sql, 'used_bytes') ?? 0);
export const blobCount = (sql: SqlStorage) => sql.exec<{ n: number }>('SELECT count(*) AS n FROM blobs').one().n;

/** A GC or delete mark older than this is from a run that died: it no longer holds anything up. */
export const GC_MARK_STALE_MS = 10 * 60 * 1000;

const isFreshMark = (mark: number | null, now: number) => mark !== null && mark >= now - GC_MARK_STALE_MS;

/** Drops a record whose deletion mark went stale (its object may be gone), refunding its bytes. */
function dropStale(sql: SqlStorage, hash: string) {
  const row = sql.exec<{ size_bytes: number }>('DELETE FROM blobs WHERE hash = ? RETURNING size_bytes', hash).toArray()[0];
  if (row?.size_bytes) setMeta(sql, 'used_bytes', Math.max(0, usedBytes(sql) - row.size_bytes));
}

/**
 * Records a blob and charges its bytes, unless they would pass `quota` together with the bytes
 * other uploads in progress have reserved. Committing twice is free. A named intent is consumed
 * (409 when it is not live or not for this file); without one (a client that predates intents),
 * the oldest live intent for the same file is, so its reservation is not counted twice.
 */
export function commitBlob(sql: SqlStorage, input: CommitInput, quota: number, now: number): CommitOutcome {
  if (input.intentId) {
    const refused = consumeIntent(sql, { intentId: input.intentId, hash: input.hash, sizeBytes: input.sizeBytes, mimeType: input.mimeType }, now);
    if (refused) return refused;
  } else {
    sql.exec(
      `UPDATE upload_intents SET status = 'consumed', consumed_at = ?1 WHERE id = (
         SELECT id FROM upload_intents WHERE hash = ?2 AND size_bytes = ?3 AND status = 'active' AND expires_at > ?1 ORDER BY created_at LIMIT 1)`,
      now,
      input.hash,
      input.sizeBytes,
    );
  }
  let existing = sql.exec<{ gc_started_at: number | null }>('SELECT gc_started_at FROM blobs WHERE hash = ?', input.hash).toArray()[0];
  if (existing && existing.gc_started_at !== null && !isFreshMark(existing.gc_started_at, now)) {
    dropStale(sql, input.hash);
    existing = undefined;
  }
  if (existing) {
    if (existing.gc_started_at !== null)
      return { ok: false, status: 409, code: 'gc_in_progress', message: 'This blob is being deleted; upload it again shortly' };
    sql.exec('UPDATE blobs SET name = COALESCE(?, name), kind = COALESCE(?, kind) WHERE hash = ?', input.name, input.kind, input.hash);
    return { ok: true, charged: 0 };
  }
  const used = usedBytes(sql);
  const reserved = reservedBytes(sql, now);
  if (used + reserved + input.sizeBytes > quota) {
    return {
      ok: false,
      status: 413,
      code: 'quota_exceeded',
      message: `Workspace storage quota exceeded (${used} stored + ${reserved} reserved + ${input.sizeBytes} > ${quota} bytes)`,
    };
  }
  sql.exec(
    'INSERT INTO blobs (hash, size_bytes, mime_type, storage_key, name, kind, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    input.hash,
    input.sizeBytes,
    input.mimeType,
    input.storageKey,
    input.name,
    input.kind,
    now,
  );
  setMeta(sql, 'used_bytes', used + input.sizeBytes);
  return { ok: true, charged: input.sizeBytes };
}

export interface BlobState {
  committed: boolean;
  gcPending: boolean;
  sizeBytes: number | null;
  refCount: number;
}

export function blobState(sql: SqlStorage, hash: string, now = Date.now()): BlobState {
  const row = sql.exec<{ size_bytes: number; gc_started_at: number | null }>('SELECT size_bytes, gc_started_at FROM blobs WHERE hash = ?', hash).toArray()[0];
  // A stale mark means a deletion died half-way: treat the blob as absent (commit drops the record).
  return {
    committed: !!row && row.gc_started_at === null,
    gcPending: isFreshMark(row?.gc_started_at ?? null, now),
    sizeBytes: row?.size_bytes ?? null,
    refCount: refCount(sql, hash),
  };
}

export type DeleteOutcome = { ok: true; storageKey: string | null } | Failure;

/**
 * Phase one of a delete: refuses while live messages or posts reference the blob, else marks it
 * (uploads and commits of the hash wait) and returns its key. blob-gc.ts deletes the object, then
 * `finishGc` drops the record and frees its bytes; a hash with no record has nothing to delete.
 */
export function markForDelete(sql: SqlStorage, hash: string, now: number): DeleteOutcome {
  // Decided from the rows themselves (file_refs is derived from live messages and posts; never a client's ref_count).
  const refs = refCount(sql, hash);
  if (refs > 0) return { ok: false, status: 409, code: 'blob_referenced', message: `This file is still referenced by ${refs} message(s) or post(s)` };
  if (liveFileMeta(sql, hash)) return { ok: false, status: 409, code: 'blob_referenced', message: 'This file still has a live file_meta row; delete it first' };
  const row = sql.exec<{ storage_key: string }>('UPDATE blobs SET gc_started_at = ? WHERE hash = ? RETURNING storage_key', now, hash).toArray()[0];
  return { ok: true, storageKey: row?.storage_key ?? null };
}

/** A live file_meta row's facts a download needs. */
export interface FileMetaFacts {
  name: string | null;
  kind: string | null;
  mimeType: string | null;
}

/** What a download needs to know of a blob. */
export interface FileFacts {
  committed: boolean;
  blob: { mimeType: string; kind: string | null; name: string | null } | null;
  meta: FileMetaFacts | null;
}

/** The blob's record and its live file_meta, for presign-download and the blob route. */
export function fileFacts(sql: SqlStorage, hash: string): FileFacts {
  const blob = sql
    .exec<{ mime_type: string; kind: string | null; name: string | null; gc_started_at: number | null }>(
      'SELECT mime_type, kind, name, gc_started_at FROM blobs WHERE hash = ?',
      hash,
    )
    .toArray()[0];
  const row = sql
    .exec<{ payload: string | null }>(
      `SELECT payload FROM rows WHERE table_name = 'file_meta' AND pk IN (?1, ?2) AND deleted = 0
         AND coalesce(json_extract(payload, '$.deleted'), 0) IN (0, 'false') LIMIT 1`,
      hash,
      hash.replace(/^sha256:/, ''),
    )
    .toArray()[0];
  let meta: FileMetaFacts | null = null;
  if (row) {
    const p = JSON.parse(row.payload ?? '{}') as Record<string, unknown>;
    const text = (v: unknown) => (typeof v === 'string' ? v : null);
    meta = { name: text(p.name), kind: text(p.kind), mimeType: text(p.mime_type) };
  }
  return {
    committed: !!blob && blob.gc_started_at === null,
    blob: blob ? { mimeType: blob.mime_type, kind: blob.kind, name: blob.name } : null,
    meta,
  };
}

/** Whether a live `file_meta` row names the hash (its pk in any spelling of the same hash; the payload's own `deleted` flag counts). */
export function liveFileMeta(sql: SqlStorage, hash: string): boolean {
  return (
    sql
      .exec(
        `SELECT 1 FROM rows m WHERE m.table_name = 'file_meta' AND m.pk IN (?1, ?2, ?3) AND m.deleted = 0
           AND coalesce(json_extract(m.payload, '$.deleted'), 0) IN (0, 'false') LIMIT 1`,
        hash,
        hash.toUpperCase(),
        hash.replace(/^sha256:/, ''),
      )
      .toArray().length > 0
  );
}

/**
 * Phase one of blob GC: picks confirmed orphans (no live reference, file_meta deleted or absent,
 * committed before `cutoff`) and marks them, so uploads and commits of those hashes wait.
 * Phase two (`finishGc`) removes the records once their R2 objects are gone.
 */
export function markOrphans(sql: SqlStorage, cutoff: number, limit: number, now: number): { hash: string; storageKey: string }[] {
  const candidates = sql
    .exec<{ hash: string; storage_key: string }>(
      `SELECT b.hash, b.storage_key FROM blobs b
        WHERE b.committed_at < ? AND (b.gc_started_at IS NULL OR b.gc_started_at < ?)
          AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.hash = b.hash)
          AND NOT EXISTS (SELECT 1 FROM rows m WHERE m.table_name = 'file_meta' AND lower(trim(m.pk)) = b.hash AND m.deleted = 0
                            AND coalesce(json_extract(m.payload, '$.deleted'), 0) IN (0, 'false'))
        ORDER BY b.committed_at LIMIT ?`,
      cutoff,
      now - GC_MARK_STALE_MS,
      limit,
    )
    .toArray();
  for (const c of candidates) sql.exec('UPDATE blobs SET gc_started_at = ? WHERE hash = ?', now, c.hash);
  return candidates.map((c) => ({ hash: c.hash, storageKey: c.storage_key }));
}

/** Phase two: drops the records of blobs whose objects were deleted, freeing their bytes. */
export function finishGc(sql: SqlStorage, hashes: string[]): number {
  let freed = 0;
  let deleted = 0;
  for (const hash of hashes) {
    // A sync push may have referenced the blob again while its object was being deleted.
    if (refCount(sql, hash) > 0)
      logEvent('error', 'storage_gc_lost_reference', { hash, message: 'A blob was deleted while a new reference to it arrived; re-upload it' });
    const row = sql.exec<{ size_bytes: number }>('DELETE FROM blobs WHERE hash = ? AND gc_started_at IS NOT NULL RETURNING size_bytes', hash).toArray()[0];
    if (row) {
      freed += row.size_bytes;
      deleted++;
    }
  }
  if (freed) setMeta(sql, 'used_bytes', Math.max(0, usedBytes(sql) - freed));
  return deleted;
}

/**
 * Marks objects found in R2 with no committed record ("strays": uploaded, never committed), so a
 * commit of the same hash waits while they are deleted. Returns the ones marked: committed blobs
 * and blobs already being handled are skipped. Keys look like `ws/<id>/sha256/<hex>`.
 */
export function markStrays(sql: SqlStorage, keys: string[], now: number): { hash: string; storageKey: string }[] {
  const marked: { hash: string; storageKey: string }[] = [];
  for (const key of keys) {
    const hex = /\/sha256\/([0-9a-f]{64})$/.exec(key)?.[1];
    if (!hex) continue;
    const hash = `sha256:${hex}`;
    const inserted = sql
      .exec(
        'INSERT INTO blobs (hash, size_bytes, mime_type, storage_key, committed_at, gc_started_at) VALUES (?, 0, ?, ?, 0, ?) ON CONFLICT(hash) DO NOTHING RETURNING hash',
        hash,
        'application/octet-stream',
        key,
        now,
      )
      .toArray();
    if (inserted.length) marked.push({ hash, storageKey: key });
  }
  return marked;
}

/**
 * What presign-upload needs in one call: the blob's state and the workspace's committed bytes
 * (a re-upload of a committed blob costs no quota, so the caller discounts it).
 */
export function uploadState(sql: SqlStorage, hash: string, now = Date.now()): { state: BlobState; usedBytes: number } {
  return { state: blobState(sql, hash, now), usedBytes: usedBytes(sql) };
}

/** Phase one of blob GC, refused inside the cooldown after the previous run. */
export function startBlobGc(
  sql: SqlStorage,
  input: { retentionSeconds: number; limit: number; cooldownMs: number },
  now: number,
): { ok: true; candidates: { hash: string; storageKey: string }[]; strayCursor: string | null } | Failure {
  const last = Number(getMeta(sql, 'blob_gc_at') ?? 0);
  if (now - last < input.cooldownMs) {
    const wait = Math.ceil((last + input.cooldownMs - now) / 1000);
    return { ok: false, status: 429, code: 'rate_limited', message: `Rate limit exceeded. Retry after ${wait}s`, retryAfter: wait };
  }
  setMeta(sql, 'blob_gc_at', now);
  return { ok: true, candidates: markOrphans(sql, now - input.retentionSeconds * 1000, input.limit, now), strayCursor: getMeta(sql, 'stray_cursor') };
}

/** Marks strays and saves where the R2 listing stopped, so every object is reached over successive runs. */
export function markStraysAt(sql: SqlStorage, keys: string[], nextCursor: string | null, now: number) {
  if (nextCursor) setMeta(sql, 'stray_cursor', nextCursor);
  else sql.exec("DELETE FROM meta WHERE key = 'stray_cursor'");
  return markStrays(sql, keys, now);
}

/** A committed blob's record, as an export's `file` line carries it (docs/operations.md "Export"). */
export interface BlobRecord {
  hash: string;
  size_bytes: number;
  mime_type: string;
  name: string | null;
  kind: string | null;
}

/** Committed blobs after `after` (by hash), at most `limit`; blobs being deleted are left out. */
export function listBlobs(sql: SqlStorage, after: string, limit: number): BlobRecord[] {
  return sql
    .exec<{ hash: string; size_bytes: number; mime_type: string; name: string | null; kind: string | null }>(
      'SELECT hash, size_bytes, mime_type, name, kind FROM blobs WHERE hash > ? AND gc_started_at IS NULL ORDER BY hash LIMIT ?',
      after,
      limit,
    )
    .toArray();
}
