import { env } from 'cloudflare:workers';
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { LOGIN_BACKOFF, blockedForMs, countAttempt, forgetAt, type AttemptState } from '../../src/login-attempts/backoff';
import { PASSWORD, call, signInBearer, signedInUser } from './helpers';

const T0 = 1_000_000_000_000;

/** Runs the backoff's rules over a counter kept here, as the object keeps it in its storage. */
function counter() {
  let state: AttemptState | undefined;
  return {
    count(now: number) {
      const { verdict, next } = countAttempt(state, now);
      if (next) state = next;
      return verdict;
    },
    blockedForMs: (now: number) => blockedForMs(state, now),
    get state() {
      return state;
    },
  };
}

describe('per-account login backoff (the rules, at chosen times)', () => {
  it('lets 5 attempts through, then blocks for 5 s, doubling per attempt let through after a block', () => {
    const c = counter();
    for (let i = 0; i < 5; i++) expect(c.count(T0 + i)).toEqual({ allowed: true });
    expect(c.count(T0 + 10)).toEqual({ allowed: false, retryAfterMs: 4_994 });
    // The refused attempt did not extend the block.
    expect(c.blockedForMs(T0 + 10)).toBe(4_994);
    expect(c.count(T0 + 5_010).allowed).toBe(true);
    expect(c.blockedForMs(T0 + 5_010)).toBe(10_000);
    let t = T0 + 5_010;
    for (let i = 0; i < 20; i++) {
      t += LOGIN_BACKOFF.maxBlockMs; // wait out each block, but stay inside the counting window
      c.count(Math.min(t, T0 + LOGIN_BACKOFF.windowMs - 1));
    }
    expect(c.blockedForMs(T0 + LOGIN_BACKOFF.windowMs - 1)).toBeLessThanOrEqual(LOGIN_BACKOFF.maxBlockMs);
    expect(c.blockedForMs(T0 + LOGIN_BACKOFF.windowMs - 1)).toBeGreaterThan(0);
  });

  it('forgets attempts older than the window: no permanent lockout', () => {
    const c = counter();
    for (let i = 0; i < 6; i++) c.count(T0 + i);
    const later = T0 + LOGIN_BACKOFF.windowMs + 60_000;
    expect(c.blockedForMs(later)).toBe(0);
    expect(c.count(later)).toEqual({ allowed: true });
    expect(c.state).toEqual({ failures: 1, lastFailedAt: later, blockedUntil: 0 });
  });

  it('a counter may be forgotten only once its window has passed and its block has ended (then nothing differs)', () => {
    const c = counter();
    for (let i = 0; i < 5; i++) c.count(T0 + i);
    const at = forgetAt(c.state!);
    expect(at).toBeGreaterThan(T0 + 4 + LOGIN_BACKOFF.windowMs);
    expect(at).toBeGreaterThanOrEqual(c.state!.blockedUntil);
    // From then on a stored counter and no counter answer alike.
    const fresh = counter();
    expect(c.count(at)).toEqual(fresh.count(at));
    expect(c.state).toEqual(fresh.state);
  });
});

/** The object of a fresh attempt key. */
const attemptObject = () => env.LOGIN_ATTEMPTS.getByName(`test:${crypto.randomUUID()}`);

describe('per-account login backoff (one object per key)', () => {
  it('blocks the 6th attempt for about 5 s; a success clears the counter and the object keeps nothing', async () => {
    const stub = attemptObject();
    for (let i = 0; i < LOGIN_BACKOFF.freeFailures; i++) expect(await stub.count()).toEqual({ allowed: true });
    const refused = await stub.count();
    expect(refused.allowed).toBe(false);
    if (!refused.allowed) expect(refused.retryAfterMs).toBeGreaterThan(3_000);
    expect((await stub.state())?.failures).toBe(LOGIN_BACKOFF.freeFailures);
    await stub.clear();
    expect(await stub.state()).toBeNull();
    expect(await stub.count()).toEqual({ allowed: true });
    await stub.clear();
    const left = await runInDurableObject(stub, async (_i, state) => ({ entries: [...state.storage.kv.list()].length, alarm: await state.storage.getAlarm() }));
    expect(left).toEqual({ entries: 0, alarm: null });
  });

  it('20 concurrent attempts on one account: only 5 get through', async () => {
    const stub = attemptObject();
    const results = await Promise.all(Array.from({ length: 20 }, () => stub.count()));
    expect(results.filter((r) => r.allowed)).toHaveLength(LOGIN_BACKOFF.freeFailures);
  });

  it('a block survives the object being evicted (it is stored, not only in memory)', async () => {
    const stub = attemptObject();
    for (let i = 0; i < LOGIN_BACKOFF.freeFailures; i++) await stub.count();
    const before = await stub.state();
    await evictDurableObject(stub);
    expect(await stub.state()).toEqual(before);
    expect((await stub.count()).allowed).toBe(false);
  });

  it('the alarm deletes the counter once its window and block are over, and not before', async () => {
    const stub = attemptObject();
    for (let i = 0; i < LOGIN_BACKOFF.freeFailures; i++) await stub.count();
    const alarm = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect(alarm).toBe(forgetAt((await stub.state())!));
    // Run early, the alarm keeps the counter (and sets itself again).
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await stub.state())?.failures).toBe(LOGIN_BACKOFF.freeFailures);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).toBe(alarm);
    // Move the counter into the past, as if the window had passed: the alarm deletes everything.
    await runInDurableObject(stub, (_i, state) => {
      const past = Date.now() - LOGIN_BACKOFF.windowMs - 10_000;
      state.storage.kv.put('counter', { failures: LOGIN_BACKOFF.freeFailures, lastFailedAt: past, blockedUntil: past + LOGIN_BACKOFF.firstBlockMs });
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.state()).toBeNull();
    const left = await runInDurableObject(stub, async (_i, state) => ({ entries: [...state.storage.kv.list()].length, alarm: await state.storage.getAlarm() }));
    expect(left).toEqual({ entries: 0, alarm: null });
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
