import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { LOGIN_BACKOFF, clearLoginFailures, loginBlockedForMs, recordLoginFailure } from '../../src/auth/store';

describe('per-account login backoff (D1)', () => {
  it('blocks from the 5th failure for 5 s, doubling to a 15-minute cap', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    const t0 = 1_000_000_000_000;
    for (let i = 0; i < 4; i++) await recordLoginFailure(env.DB, key, t0 + i);
    expect(await loginBlockedForMs(env.DB, key, t0 + 4)).toBe(0);
    await recordLoginFailure(env.DB, key, t0 + 10);
    expect(await loginBlockedForMs(env.DB, key, t0 + 10)).toBe(5_000);
    await recordLoginFailure(env.DB, key, t0 + 20);
    expect(await loginBlockedForMs(env.DB, key, t0 + 20)).toBe(10_000);
    for (let i = 0; i < 20; i++) await recordLoginFailure(env.DB, key, t0 + 30 + i);
    expect(await loginBlockedForMs(env.DB, key, t0 + 49)).toBe(LOGIN_BACKOFF.maxBlockMs);
  });

  it('forgets failures older than the window: no permanent lockout', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    const t0 = 1_000_000_000_000;
    for (let i = 0; i < 8; i++) await recordLoginFailure(env.DB, key, t0 + i);
    const later = t0 + LOGIN_BACKOFF.windowMs + 60_000;
    expect(await loginBlockedForMs(env.DB, key, later)).toBe(0);
    await recordLoginFailure(env.DB, key, later);
    expect(await loginBlockedForMs(env.DB, key, later)).toBe(0);
  });

  it('a success clears the counter', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    for (let i = 0; i < 5; i++) await recordLoginFailure(env.DB, key);
    expect(await loginBlockedForMs(env.DB, key)).toBeGreaterThan(0);
    await clearLoginFailures(env.DB, key);
    expect(await loginBlockedForMs(env.DB, key)).toBe(0);
  });
});
