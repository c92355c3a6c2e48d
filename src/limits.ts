/**
 * Platform limits and the limits we derive from them, in one place, each with its source.
 * Limits of a feature's own protocol live with it (e.g. `SYNC_LIMITS` in protocol/rules.ts).
 */
export const PLATFORM = {
  /** Serialized RPC arguments or return values (developers.cloudflare.com/workers/runtime-apis/rpc/). */
  rpcBytes: 32 * 1024 * 1024,
  /** Bytes in a LIKE/GLOB pattern, D1 and DO SQLite (developers.cloudflare.com/d1/platform/limits/). */
  likePatternBytes: 50,
} as const;

export const LIMITS = {
  /** A sync push may carry 2 MiB of ops (docs/sync.md "Limits"); a little room for the envelope around them. */
  jsonBodyBytes: 2 * 1024 * 1024 + 64 * 1024,
} as const;
