/**
 * Upload intents (docs/api.md "Upload intents"): presign-upload reserves the bytes it authorizes
 * here, inside the object's transaction, so uploads running at the same time can never together
 * pass the workspace's storage quota; the commit that names the intent consumes it once. An
 * intent reserves its bytes while `active` and unexpired: expiry frees them without any sweep
 * (the status is brought up to date on the next reservation).
 *
 * The rules follow OR3's newer server (its provider's `upload_intents`, migration 008), written
 * in our own code. Synchronous: called inside `transactionSync`.
 */
import type { Failure } from '../errors';

/** The blob's state as blobs.ts `blobState` reports it (the part a reservation needs). */
export interface BlobFacts {
  committed: boolean;
  gcPending: boolean;
}

/** Intents that ended more than this long ago are deleted (a handful per reservation). */
const KEEP_ENDED_MS = 24 * 3600 * 1000;

export interface ReserveInput {
  hash: string;
  mimeType: string;
  sizeBytes: number;
  userId: string;
  expiresAt: number;
  quotaBytes: number;
  /** The presign declared `file_kind_capability`: the client commits with the intent (pushFileMetaRefusals). */
  strict: boolean;
}

export type ReserveOutcome = { ok: true; intentId: string; reservedBytes: number } | Failure;

/** Bytes held by other live intents (active and unexpired). */
export function reservedBytes(sql: SqlStorage, now: number, exceptId = ''): number {
  return sql
    .exec<{ n: number }>(
      "SELECT coalesce(sum(reserved_bytes), 0) AS n FROM upload_intents WHERE status = 'active' AND expires_at > ? AND id != ?",
      now,
      exceptId,
    )
    .one().n;
}

/**
 * The quota check of a step that reserves nothing (multipart create, urls and complete): the
 * committed bytes, those reserved by live intents and this upload's must fit. A committed blob
 * costs nothing again.
 */
export function quotaRefusal(sql: SqlStorage, input: { sizeBytes: number; quotaBytes: number }, state: BlobFacts, used: number, now: number): Failure | null {
  const reserved = reservedBytes(sql, now);
  const adding = state.committed ? 0 : input.sizeBytes;
  if (used + reserved + adding <= input.quotaBytes) return null;
  const message = `Workspace storage quota exceeded (${used} stored + ${reserved} reserved by uploads in progress + ${adding} > ${input.quotaBytes} bytes)`;
  return { ok: false, status: 413, code: 'quota_exceeded', message };
}

/**
 * Records an intent for `hash`, reserving its bytes unless they are already stored or already
 * reserved by another live intent for the same hash; refuses (413) when committed plus reserved
 * bytes would pass the quota. A blob being deleted is a 409.
 */
export function reserveUpload(sql: SqlStorage, input: ReserveInput, state: BlobFacts, used: number, now: number): ReserveOutcome {
  sql.exec("UPDATE upload_intents SET status = 'expired' WHERE status = 'active' AND expires_at <= ?", now);
  sql.exec(
    "DELETE FROM upload_intents WHERE rowid IN (SELECT rowid FROM upload_intents WHERE status != 'active' AND expires_at < ? LIMIT 50)",
    now - KEEP_ENDED_MS,
  );
  if (state.gcPending) return { ok: false, status: 409, code: 'gc_in_progress', message: 'This blob is being deleted by GC; try again shortly' };
  const sameHash =
    sql.exec("SELECT 1 FROM upload_intents WHERE hash = ? AND status = 'active' AND expires_at > ? AND reserved_bytes > 0 LIMIT 1", input.hash, now).toArray()
      .length > 0;
  const reserve = state.committed || sameHash ? 0 : input.sizeBytes;
  const reserved = reservedBytes(sql, now);
  if (used + reserved + reserve > input.quotaBytes) {
    return {
      ok: false,
      status: 413,
      code: 'quota_exceeded',
      message: `Workspace storage quota exceeded (${used} stored + ${reserved} reserved by uploads in progress + ${reserve} > ${input.quotaBytes} bytes)`,
    };
  }
  const intentId = crypto.randomUUID();
  sql.exec(
    `INSERT INTO upload_intents (id, hash, mime_type, size_bytes, reserved_bytes, status, user_id, strict, expires_at, created_at)
     VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)`,
    intentId,
    input.hash,
    input.mimeType,
    input.sizeBytes,
    reserve,
    input.userId,
    input.strict ? 1 : 0,
    input.expiresAt,
    now,
  );
  // What other uploads hold, for the policies (which add this upload's size themselves): an earlier intent for the same bytes is this upload.
  return { ok: true, intentId, reservedBytes: sameHash && !state.committed ? Math.max(0, reserved - input.sizeBytes) : reserved };
}

/** Ends an intent the Worker refused after reserving it (a policy hook said no): its bytes are free at once. */
export function cancelIntent(sql: SqlStorage, intentId: string): void {
  sql.exec("UPDATE upload_intents SET status = 'cancelled' WHERE id = ? AND status = 'active'", intentId);
}

const INTENT_REFUSED: Failure = { ok: false, status: 409, code: 'intent_invalid', message: 'Upload intent expired, mismatched, or already consumed' };

/**
 * Consumes the intent a commit names: it must be active, unexpired and for this very hash, size
 * and MIME type; else 409 and nothing changes. Returns the bytes it had reserved.
 */
export function consumeIntent(sql: SqlStorage, input: { intentId: string; hash: string; sizeBytes: number; mimeType: string }, now: number): Failure | null {
  const row = sql
    .exec(
      `UPDATE upload_intents SET status = 'consumed', consumed_at = ?
        WHERE id = ? AND status = 'active' AND expires_at > ? AND hash = ? AND size_bytes = ? AND mime_type = ? RETURNING id`,
      now,
      input.intentId,
      now,
      input.hash,
      input.sizeBytes,
      input.mimeType,
    )
    .toArray();
  return row.length ? null : INTENT_REFUSED;
}

/**
 * The hashes among `hashes` whose bytes are not committed while a live strict intent for them
 * exists (docs/api.md "Upload intents"): a newer client's `file_meta` for them must wait for the
 * commit. One query; nothing for a push without file_meta puts.
 */
export function uncommittedUnderIntent(sql: SqlStorage, hashes: string[], now: number): Set<string> {
  if (!hashes.length) return new Set();
  const rows = sql.exec<{ hash: string }>(
    `SELECT DISTINCT i.hash FROM upload_intents i
      WHERE i.hash IN (SELECT value FROM json_each(?)) AND i.status = 'active' AND i.strict = 1 AND i.expires_at > ?
        AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = i.hash AND b.gc_started_at IS NULL)`,
    JSON.stringify(hashes),
    now,
  );
  return new Set([...rows].map((r) => r.hash));
}
