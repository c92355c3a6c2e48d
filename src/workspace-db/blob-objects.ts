/**
 * The R2 side of blobs, run inside the workspace's object (docs/storage.md): the check of the
 * stored bytes before a commit counts them, blob delete, and blob GC, each one call from its
 * route (`/commit`, `/delete`, `/gc/run`) and, for GC, from the alarm.
 *
 * GC hard-deletes only confirmed orphans: committed blobs with no live reference whose file_meta
 * is deleted or absent and that are older than the retention, plus objects that were uploaded but
 * never committed and are older than the retention. Two phases, so a failed R2 delete never loses
 * bookkeeping: the object marks its candidates in a transaction (uploads and commits of those
 * hashes wait), R2 deletes them, then a second transaction drops the records and frees their
 * bytes. A run that dies leaves marks that the next run takes over after 10 minutes
 * (blobs.ts `GC_MARK_STALE_MS`).
 */
import { storedHashMatches } from '../crypto';
import type { Failure } from '../errors';
import { finishGc, markForDelete, markStraysAt, startBlobGc } from './blobs';

/**
 * Whether the bytes stored under `key` may be committed as `sizeBytes` with SHA-256 `hex`: they
 * exist (404), have that size (422), and, when they may have bypassed the Worker's checked PUT
 * (direct S3 URLs are enabled, or the object lacks our verification mark), hash to `hex`; a
 * mismatch removes the object (422). Object metadata alone is not trusted while S3 uploads are
 * possible: an S3 client might set it.
 */
export async function checkStored(bucket: R2Bucket, input: { key: string; sizeBytes: number; hex: string; s3Uploads: boolean }): Promise<Failure | null> {
  const head = await bucket.head(input.key);
  if (!head) return { ok: false, status: 404, code: 'blob_not_found', message: 'Upload the file before committing it' };
  if (head.size !== input.sizeBytes)
    return { ok: false, status: 422, code: 'size_mismatch', message: `The stored file has ${head.size} bytes, not ${input.sizeBytes}` };
  const mayBypass = input.s3Uploads || head.customMetadata?.verified !== 'sha256';
  if (mayBypass && !(await storedHashMatches(bucket, input.key, input.hex))) {
    await bucket.delete(input.key);
    return { ok: false, status: 422, code: 'integrity_error', message: 'The stored bytes do not match the hash; the object was removed' };
  }
  return null;
}

export interface BlobGcOptions {
  retentionSeconds: number;
  limit: number;
  /** The least time between two runs (OR3_STORAGE_GC_COOLDOWN_MS for the route; 0 for the alarm). */
  cooldownMs: number;
}

export type BlobGcResult = { ok: true; deleted_count: number; scanned_count: number; status: 'ok' | 'partial' } | Failure;

/** One blob GC run: orphans first, then one page of the R2 listing for strays. */
export async function collectBlobs(storage: DurableObjectStorage, bucket: R2Bucket, workspaceId: string, opts: BlobGcOptions): Promise<BlobGcResult> {
  const sql = storage.sql;
  const finish = (hashes: string[]) => storage.transactionSync(() => finishGc(sql, hashes));
  const started = storage.transactionSync(() => startBlobGc(sql, opts, Date.now()));
  if (!started.ok) return started;
  let deleted = 0;
  let status: 'ok' | 'partial' = 'ok';
  const keys = started.candidates.map((c) => c.storageKey);
  if (keys.length) {
    try {
      await bucket.delete(keys);
      deleted += finish(started.candidates.map((c) => c.hash));
    } catch {
      status = 'partial'; // records stay marked; the next run retries
    }
  }
  // Uploaded but never committed: one listing page per run keeps a run bounded; the cursor is
  // kept between runs. Only sha256 objects: legacy md5 files are never committed but must stay.
  const cutoff = Date.now() - opts.retentionSeconds * 1000;
  const listing = await bucket.list({
    prefix: `ws/${workspaceId}/sha256/`,
    limit: Math.min(1000, opts.limit),
    ...(started.strayCursor ? { cursor: started.strayCursor } : {}),
  });
  const old = listing.objects.filter((o) => o.uploaded.getTime() < cutoff && !keys.includes(o.key)).map((o) => o.key);
  const strays = storage.transactionSync(() => markStraysAt(sql, old, listing.truncated ? listing.cursor : null, Date.now()));
  if (strays.length) {
    try {
      await bucket.delete(strays.map((s) => s.storageKey));
      deleted += finish(strays.map((s) => s.hash));
    } catch {
      status = 'partial';
    }
  }
  return { ok: true, deleted_count: deleted, scanned_count: started.candidates.length + listing.objects.length, status };
}

/**
 * Deletes one blob the same way: refused (409) while live rows reference it; otherwise marked,
 * its object deleted, its record dropped and its bytes freed. `existed` is false when nothing was
 * committed (an upload in flight is not ours to remove). An R2 failure rejects and leaves the
 * mark, which goes stale and is taken over like a GC run's.
 */
export async function deleteBlob(storage: DurableObjectStorage, bucket: R2Bucket, hash: string): Promise<{ ok: true; existed: boolean } | Failure> {
  const marked = storage.transactionSync(() => markForDelete(storage.sql, hash, Date.now()));
  if (!marked.ok) return marked;
  if (!marked.storageKey) return { ok: true, existed: false };
  await bucket.delete(marked.storageKey);
  storage.transactionSync(() => finishGc(storage.sql, [hash]));
  return { ok: true, existed: true };
}
