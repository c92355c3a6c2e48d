/**
 * Per-user request limits, counted in memory inside a Durable Object: sync's (the workspace's
 * object, workspace-db/sync-service.ts) and service tokens' (src/service/tokens.ts).
 *
 * Why here and not a Rate Limiting binding: the binding's limit is fixed in wrangler.toml, but
 * OR3_RATE_LIMIT_OVERRIDES_JSON must be able to change it, and the object already sees every
 * request of its workspace, in order, on one thread, so an exact counter costs nothing extra.
 * Counts are per user per workspace per minute (fixed windows), and live in memory: an evicted
 * object starts counting afresh, which only ever errs towards letting a request through.
 */
import type { Failure } from './errors';

export const DEFAULT_SYNC_LIMITS = { push: 200, pull: 120, updateCursor: 60, gc: 10 } as const;
export type SyncLimitName = keyof typeof DEFAULT_SYNC_LIMITS;

/**
 * Which limit a sync request counts against. The object adds who is calling once it has
 * authorized them, and how many per minute from its own configuration (syncPerMinute).
 */
export interface LimitedCall {
  /** null: authorized but not counted (a later page of a socket's pull stream, whose pull message was counted; socket-sync.ts). */
  limit: SyncLimitName | null;
}

/** A sync limit's requests per user per minute: OR3_RATE_LIMIT_OVERRIDES_JSON's value, else the default. */
export const syncPerMinute = (overrides: Partial<Record<SyncLimitName, number>>, name: SyncLimitName): number => overrides[name] ?? DEFAULT_SYNC_LIMITS[name];

export class FixedWindowLimiter {
  readonly #windowMs: number;
  readonly #counts = new Map<string, { start: number; count: number }>();

  constructor(windowMs = 60_000) {
    this.#windowMs = windowMs;
  }

  /** Counts one request for `key` (unless `count` is false: only asks); returns the seconds to wait when it is over `limit`. */
  take(key: string, limit: number, now = Date.now(), count = true): { ok: true } | { ok: false; retryAfterSeconds: number } {
    const start = now - (now % this.#windowMs);
    let entry = this.#counts.get(key);
    if (!entry || entry.start !== start) {
      if (this.#counts.size > 10_000) this.#prune(start);
      entry = { start, count: 0 };
      this.#counts.set(key, entry);
    }
    if (entry.count >= limit) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((start + this.#windowMs - now) / 1000)) };
    if (count) entry.count += 1;
    return { ok: true };
  }

  /** Counts one request for `key` (`count` false: only asks); the 429 failure when it is over `perMinute`, else null. */
  refuseKey(key: string, perMinute: number, now = Date.now(), count = true): Failure | null {
    const verdict = this.take(key, perMinute, now, count);
    if (verdict.ok) return null;
    return {
      ok: false,
      status: 429,
      code: 'rate_limited',
      message: `Rate limit exceeded. Retry after ${verdict.retryAfterSeconds}s`,
      retryAfter: verdict.retryAfterSeconds,
    };
  }

  #prune(currentStart: number) {
    for (const [key, entry] of this.#counts) if (entry.start !== currentStart) this.#counts.delete(key);
  }
}
