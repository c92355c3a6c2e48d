import { describe, expect, it } from 'vitest';
import { FixedWindowLimiter } from './limiter';

describe('FixedWindowLimiter', () => {
  it('allows `limit` requests per key per window, then says how long to wait', () => {
    const limiter = new FixedWindowLimiter(60_000);
    const t = 1_000_000 * 60_000 + 15_000;
    for (let i = 0; i < 3; i++) expect(limiter.take('push:a', 3, t)).toEqual({ ok: true });
    expect(limiter.take('push:a', 3, t)).toEqual({ ok: false, retryAfterSeconds: 45 });
    expect(limiter.take('push:b', 3, t)).toEqual({ ok: true });
    expect(limiter.take('push:a', 3, t + 45_000)).toEqual({ ok: true });
  });
});
