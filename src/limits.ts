/**
 * Platform limits and the limits we derive from them, in one place, each with its source.
 * Chunk sizes elsewhere are computed from these, never hard-coded.
 */
export const PLATFORM = {
  /** Bound parameters per SQL statement, DO SQLite and D1 (developers.cloudflare.com/d1/platform/limits/, /durable-objects/platform/limits/). */
  sqlBoundParameters: 100,
  /** Largest string, BLOB or row in DO SQLite and D1 (same pages). */
  sqlRowBytes: 2 * 1024 * 1024,
  /** Serialized RPC arguments or return values (developers.cloudflare.com/workers/runtime-apis/rpc/). */
  rpcBytes: 32 * 1024 * 1024,
  /** WebSocket `serializeAttachment` (developers.cloudflare.com/durable-objects/api/state/). */
  webSocketAttachmentBytes: 16 * 1024,
  /** PBKDF2 iterations accepted in production, though not locally (workerd #1346). */
  pbkdf2MaxIterations: 100_000,
  /** Bytes in a LIKE/GLOB pattern, D1 and DO SQLite (same limits pages). */
  likePatternBytes: 50,
  /** R2 object metadata (developers.cloudflare.com/r2/platform/limits/). */
  r2MetadataBytes: 8 * 1024,
} as const;

export const LIMITS = {
  /** A sync push may carry 2 MiB of ops (API.md); a little room for the envelope around them. */
  jsonBodyBytes: 2 * 1024 * 1024 + 64 * 1024,
} as const;

/** How many rows fit in one multi-row INSERT of `columns` columns under the bound-parameter limit. */
export function rowsPerInsert(columns: number): number {
  if (columns < 1 || columns > PLATFORM.sqlBoundParameters) throw new RangeError(`columns must be 1..${PLATFORM.sqlBoundParameters}`);
  return Math.floor(PLATFORM.sqlBoundParameters / columns);
}
