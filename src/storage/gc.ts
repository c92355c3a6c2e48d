/**
 * Blob GC, shared by `POST /api/storage/gc/run` and the workspace's alarm. Hard-deletes only
 * confirmed orphans: committed blobs with no live reference whose file_meta is deleted or absent
 * and that are older than the retention, plus objects that were uploaded but never committed and
 * are older than the retention. Two phases, so a failed R2 delete never loses bookkeeping: the
 * object marks its candidates (uploads and commits of those hashes wait), R2 deletes them, then
 * the object drops the records and frees their bytes. A run that dies leaves marks that the next
 * run takes over after 10 minutes.
 */
import type { Failure } from '../errors';

export interface BlobGcDeps {
  bucket: R2Bucket;
  workspaceId: string;
  start(input: {
    retentionSeconds: number;
    limit: number;
    cooldownMs: number;
  }): Promise<{ ok: true; candidates: { hash: string; storageKey: string }[]; strayCursor: string | null } | Failure>;
  finish(hashes: string[]): Promise<number>;
  /** Marks objects with no committed record (so commits wait) and saves the listing cursor. */
  markStrays(keys: string[], nextCursor: string | null): Promise<{ hash: string; storageKey: string }[]>;
}

export type BlobGcResult = { ok: true; deleted_count: number; scanned_count: number; status: 'ok' | 'partial' } | Failure;

export async function runBlobGc(deps: BlobGcDeps, opts: { retentionSeconds: number; limit: number; cooldownMs: number }): Promise<BlobGcResult> {
  const started = await deps.start(opts);
  if (!started.ok) return started;
  let deleted = 0;
  let status: 'ok' | 'partial' = 'ok';
  const keys = started.candidates.map((c) => c.storageKey);
  if (keys.length) {
    try {
      await deps.bucket.delete(keys);
      deleted += await deps.finish(started.candidates.map((c) => c.hash));
    } catch {
      status = 'partial'; // records stay marked; the next run retries
    }
  }
  // Uploaded but never committed: one listing page per run keeps a run bounded; the cursor is
  // kept between runs. Only sha256 objects: legacy md5 files are never committed but must stay.
  const cutoff = Date.now() - opts.retentionSeconds * 1000;
  const listing = await deps.bucket.list({
    prefix: `ws/${deps.workspaceId}/sha256/`,
    limit: Math.min(1000, opts.limit),
    ...(started.strayCursor ? { cursor: started.strayCursor } : {}),
  });
  const old = listing.objects.filter((o) => o.uploaded.getTime() < cutoff && !keys.includes(o.key)).map((o) => o.key);
  const strays = await deps.markStrays(old, listing.truncated ? listing.cursor : null);
  if (strays.length) {
    try {
      await deps.bucket.delete(strays.map((s) => s.storageKey));
      deleted += await deps.finish(strays.map((s) => s.hash));
    } catch {
      status = 'partial';
    }
  }
  return { ok: true, deleted_count: deleted, scanned_count: started.candidates.length + listing.objects.length, status };
}
