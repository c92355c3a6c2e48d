/**
 * Rate limiting through Workers Rate Limiting bindings. Counts are per Cloudflare location and
 * approximate: a first line of defence. Keys are built by callers (`signin:<ip>`,
 * `push:<userId>`), so limits apply per user or workspace where that is what matters.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { rateLimited } from '../errors';

/** The client address as Cloudflare saw it. Never X-Forwarded-For: clients can set that. */
export function clientIp(c: Context<AppEnv>): string {
  return c.req.header('cf-connecting-ip') ?? 'unknown';
}

/** Throws 429 (with Retry-After: the binding's period) when `key` is over its limit. */
export async function enforceLimit(binding: RateLimit, key: string, periodSeconds = 60): Promise<void> {
  const { success } = await binding.limit({ key });
  if (!success) throw rateLimited(periodSeconds);
}
