/**
 * The per-account backoff of password attempts (docs/auth.md "Backoff"), as a pure state
 * machine over one counter: the object that keeps the counter (object.ts) runs it on its own
 * storage, one attempt at a time. The rules are the ones D1's `login_failures` applied before:
 * counted BEFORE the password is checked, cleared on success; the Nth attempt in the window
 * (N = freeFailures) sets a 5 s block and every later one is refused until it ends; each attempt
 * let through after a block doubles it (10 s, 20 s … 15 min); attempts older than the window
 * start the count again, so there is no permanent lockout.
 */

/** Failures allowed before backoff starts, the window they count in, and the longest block. */
export const LOGIN_BACKOFF = { freeFailures: 5, firstBlockMs: 5_000, windowMs: 15 * 60 * 1000, maxBlockMs: 15 * 60 * 1000 } as const;

/** One counter: attempts not yet cleared, the last one's time, and the end of the block (0: none). */
export interface AttemptState {
  failures: number;
  lastFailedAt: number;
  blockedUntil: number;
}

export type AttemptVerdict = { allowed: true } | { allowed: false; retryAfterMs: number };

/** Milliseconds until the counter's owner may try again (0 = now). */
export function blockedForMs(state: AttemptState | undefined, now: number): number {
  return state ? Math.max(0, state.blockedUntil - now) : 0;
}

/**
 * Counts one attempt: the verdict, and the counter to store (`next`; absent when the attempt
 * was refused, which changes nothing: a refused attempt never extends the block).
 */
export function countAttempt(state: AttemptState | undefined, now: number): { verdict: AttemptVerdict; next?: AttemptState } {
  const { freeFailures, firstBlockMs, windowMs, maxBlockMs } = LOGIN_BACKOFF;
  if (state && state.blockedUntil > now) return { verdict: { allowed: false, retryAfterMs: Math.max(1000, state.blockedUntil - now) } };
  if (!state) {
    return { verdict: { allowed: true }, next: { failures: 1, lastFailedAt: now, blockedUntil: 1 >= freeFailures ? now + firstBlockMs : 0 } };
  }
  if (state.lastFailedAt < now - windowMs) return { verdict: { allowed: true }, next: { failures: 1, lastFailedAt: now, blockedUntil: 0 } };
  const failures = state.failures + 1;
  const blockedUntil = failures < freeFailures ? 0 : now + Math.min(maxBlockMs, firstBlockMs * 2 ** Math.min(failures - freeFailures, 20));
  return { verdict: { allowed: true }, next: { failures, lastFailedAt: now, blockedUntil } };
}

/**
 * From when the counter no longer matters: its window has passed and its block has ended, so
 * the next attempt would start from nothing anyway. The object deletes itself then, so objects
 * made by guessing random emails keep nothing.
 */
export function forgetAt(state: AttemptState): number {
  return Math.max(state.lastFailedAt + LOGIN_BACKOFF.windowMs + 1, state.blockedUntil);
}
