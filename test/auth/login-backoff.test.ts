import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { LOGIN_BACKOFF, clearLoginFailures, countLoginAttempt, loginBlockedForMs } from '../../src/auth/store';
import { PASSWORD, call, signInBearer, signedInUser } from './helpers';

const T0 = 1_000_000_000_000;

describe('per-account login backoff (D1)', () => {
  it('lets 5 attempts through, then blocks for 5 s, doubling per attempt let through after a block', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    for (let i = 0; i < 5; i++) expect(await countLoginAttempt(env.DB, key, T0 + i)).toEqual({ allowed: true });
    expect(await countLoginAttempt(env.DB, key, T0 + 10)).toEqual({ allowed: false, retryAfterMs: 4_994 });
    // The refused attempt did not extend the block.
    expect(await loginBlockedForMs(env.DB, key, T0 + 10)).toBe(4_994);
    expect((await countLoginAttempt(env.DB, key, T0 + 5_010)).allowed).toBe(true);
    expect(await loginBlockedForMs(env.DB, key, T0 + 5_010)).toBe(10_000);
    let t = T0 + 5_010;
    for (let i = 0; i < 20; i++) {
      t += LOGIN_BACKOFF.maxBlockMs; // wait out each block, but stay inside the counting window
      await countLoginAttempt(env.DB, key, Math.min(t, T0 + LOGIN_BACKOFF.windowMs - 1));
    }
    expect(await loginBlockedForMs(env.DB, key, T0 + LOGIN_BACKOFF.windowMs - 1)).toBeLessThanOrEqual(LOGIN_BACKOFF.maxBlockMs);
  });

  it('20 concurrent attempts on one account: only 5 get through', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    const results = await Promise.all(Array.from({ length: 20 }, () => countLoginAttempt(env.DB, key)));
    expect(results.filter((r) => r.allowed)).toHaveLength(LOGIN_BACKOFF.freeFailures);
  });

  it('forgets attempts older than the window: no permanent lockout', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    for (let i = 0; i < 6; i++) await countLoginAttempt(env.DB, key, T0 + i);
    const later = T0 + LOGIN_BACKOFF.windowMs + 60_000;
    expect(await loginBlockedForMs(env.DB, key, later)).toBe(0);
    expect(await countLoginAttempt(env.DB, key, later)).toEqual({ allowed: true });
    expect(await loginBlockedForMs(env.DB, key, later)).toBe(0);
  });

  it('a success clears the counter', async () => {
    const key = `acct-${crypto.randomUUID()}`;
    for (let i = 0; i < 5; i++) await countLoginAttempt(env.DB, key);
    expect(await loginBlockedForMs(env.DB, key)).toBeGreaterThan(0);
    await clearLoginFailures(env.DB, key);
    expect(await loginBlockedForMs(env.DB, key)).toBe(0);
  });
});

describe('change-password has its own counter (SECURITY.md §38)', () => {
  const changePassword = (user: { headers: Record<string, string> }, currentPassword: string, next = 'a brand new password') =>
    call(
      'POST',
      '/api/basic-auth/change-password',
      { ...user.headers, 'x-or3-token-transport': 'bearer' },
      { currentPassword, newPassword: next, confirmNewPassword: next },
    );

  /** Someone else failing to sign in as `email` until the account is in backoff. */
  async function lockSignIn(email: string) {
    for (let i = 0; i < LOGIN_BACKOFF.freeFailures; i++) expect((await signInBearer(email, 'a wrong guess!')).res.status).toBe(401);
    expect((await signInBearer(email, PASSWORD)).res.status).toBe(429);
  }

  it("someone else's failed sign-ins for the email never block the signed-in owner's change-password", async () => {
    const owner = await signedInUser();
    await lockSignIn(owner.email);
    expect((await changePassword(owner, PASSWORD)).status).toBe(200);
  });

  it('sign-in attempts cannot name the change-password counter', async () => {
    const owner = await signedInUser();
    await lockSignIn(`cpw:${owner.id}`);
    expect((await changePassword(owner, PASSWORD)).status).toBe(200);
  });

  it('wrong current passwords back off change-password for that user only, and leave sign-in alone', async () => {
    const owner = await signedInUser();
    for (let i = 0; i < LOGIN_BACKOFF.freeFailures; i++) expect((await changePassword(owner, 'not my password')).status).toBe(400);
    const blocked = await changePassword(owner, PASSWORD);
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await signInBearer(owner.email)).res.status).toBe(200);
  });
});
