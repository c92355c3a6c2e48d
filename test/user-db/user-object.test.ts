/**
 * One object per user (docs/architecture.md "Sessions live with their user"): refresh and
 * sign-out cost no D1 query, in the Worker or in the object; a session an earlier release left
 * in D1 keeps working and moves into the object on first use; changes reach the workspace
 * objects that cache the user's facts.
 */
import { env } from 'cloudflare:workers';
import { createOwnedWorkspace } from '../../src/workspace-records/member-writes';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { signAccessToken, signingKeys } from '../../src/auth/tokens';
import { randomToken, sha256Hex } from '../../src/crypto';
import type { Bindings } from '../../src/env';
import { PASSWORD, call, makeUser, signedInUser, userCount, userRows } from '../auth/helpers';
import { apiWithEnv, countingDb } from '../helpers';

const bearer = { 'x-or3-token-transport': 'bearer', 'content-type': 'application/json' };

/** Replaces the D1 binding inside a user's object with a counting one; returns a reader of its count. */
async function countUserObjectD1(userId: string) {
  const stub = env.USER_DB.getByName(userId);
  await runInDurableObject(stub, (instance) => {
    const objectEnv = (instance as unknown as { env: Bindings & { __counter?: { calls: number } } }).env;
    const { db, counter } = countingDb(objectEnv.DB);
    objectEnv.DB = db;
    objectEnv.__counter = counter;
  });
  return () => runInDurableObject(stub, (instance) => (instance as unknown as { env: { __counter: { calls: number } } }).env.__counter.calls);
}

/** A session as the release before user objects made it: rows in D1, a `<id>.<secret>` refresh token and an access token naming the session. */
async function legacySession(userId: string, now = Date.now()) {
  const sessionId = crypto.randomUUID();
  const tokenId = crypto.randomUUID();
  const secret = randomToken();
  await env.DB.batch([
    env.DB.prepare('INSERT INTO sessions (id, user_id, created_at, expires_at, last_seen_at, revoked_at, user_agent) VALUES (?, ?, ?, ?, ?, NULL, ?)').bind(
      sessionId,
      userId,
      now,
      now + 90 * 24 * 3600 * 1000,
      now,
      'old-release',
    ),
    env.DB.prepare('INSERT INTO refresh_tokens (id, session_id, user_id, secret_hash, parent_id, created_at, expires_at) VALUES (?, ?, ?, ?, NULL, ?, ?)').bind(
      tokenId,
      sessionId,
      userId,
      await sha256Hex(secret),
      now,
      now + 30 * 24 * 3600 * 1000,
    ),
  ]);
  const keys = await signingKeys(env.OR3_BASIC_AUTH_JWT_SECRET as string);
  const { token } = await signAccessToken(keys, { sub: userId, sid: sessionId, ver: 0 }, 900);
  return { sessionId, refreshToken: `${tokenId}.${secret}`, headers: { authorization: `Bearer ${token}` } };
}

const refreshWith = (refreshToken: string, vars: Record<string, unknown> = {}) =>
  apiWithEnv(vars, '/api/basic-auth/refresh', { method: 'POST', headers: bearer, body: JSON.stringify({ refreshToken }) });

describe('refresh and sign-out in the user object', () => {
  it('a refresh makes 0 D1 queries, in the Worker and in the object; so does sign-out', async () => {
    const user = await signedInUser(); // sign-in used the object once: it is warm
    const readObjectCalls = await countUserObjectD1(user.id);
    const worker = countingDb(env.DB);
    let [previous, token] = [user.refreshToken, user.refreshToken];
    for (let i = 0; i < 3; i++) {
      const res = await refreshWith(token, { DB: worker.db });
      expect(res.status).toBe(200);
      [previous, token] = [token, (await res.json<{ refreshToken: string }>()).refreshToken];
    }
    // A retry inside the grace window is answered by the object alone too.
    expect((await (await refreshWith(previous, { DB: worker.db })).json<{ refreshToken: string }>()).refreshToken).toBe(token);
    const signOut = await apiWithEnv({ DB: worker.db }, '/api/basic-auth/sign-out', {
      method: 'POST',
      headers: bearer,
      body: JSON.stringify({ refreshToken: token }),
    });
    expect(signOut.status).toBe(200);
    expect((await refreshWith(token, { DB: worker.db })).status).toBe(401);
    expect(worker.counter.calls).toBe(0);
    expect(await readObjectCalls()).toBe(0);
  });

  it('a token naming a user whose object was never used is refused with no D1 query (forged tokens cost nothing central)', async () => {
    const nobody = crypto.randomUUID();
    const readObjectCalls = await countUserObjectD1(nobody);
    const worker = countingDb(env.DB);
    const forged = `${crypto.randomUUID()}.${randomToken()}.${nobody}`;
    expect((await refreshWith(forged, { DB: worker.db })).status).toBe(401);
    const signOut = await apiWithEnv({ DB: worker.db }, '/api/basic-auth/sign-out', {
      method: 'POST',
      headers: bearer,
      body: JSON.stringify({ refreshToken: forged }),
    });
    expect(signOut.status).toBe(200);
    expect(worker.counter.calls).toBe(0);
    expect(await readObjectCalls()).toBe(0);
  });

  it('keeps at most 200 live sessions per user: the least recently used one ends', async () => {
    const { id } = await makeUser();
    const stub = env.USER_DB.getByName(id);
    const first = await stub.createSession({ refreshTtlMs: 3600_000, userAgent: null });
    for (let i = 0; i < 200; i++) await stub.createSession({ refreshTtlMs: 3600_000, userAgent: null });
    expect(await userCount(id, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')).toBe(200);
    expect(await userCount(id, 'SELECT count(*) AS n FROM sessions WHERE id = ? AND revoked_at IS NOT NULL', first.sessionId)).toBe(1);
    expect((await refreshWith(first.refreshToken)).status).toBe(401);
  });

  it('lists the sessions it holds, most recent first, with no secrets', async () => {
    const user = await signedInUser();
    const listed = await env.USER_DB.getByName(user.id).listSessions();
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ revokedAt: null, expiresAt: expect.any(Number) });
    expect(JSON.stringify(listed)).not.toContain(user.refreshToken.split('.')[1]);
  });

  it('a password change ends the other sessions in the object and keeps this one', async () => {
    const user = await signedInUser();
    const { refreshToken: other } = await (
      await apiWithEnv({}, '/api/basic-auth/sign-in', { method: 'POST', headers: bearer, body: JSON.stringify({ email: user.email, password: PASSWORD }) })
    ).json<{ refreshToken: string }>();
    const changed = await call('POST', '/api/basic-auth/change-password', user.headers, {
      currentPassword: PASSWORD,
      newPassword: 'a different long passphrase',
      confirmNewPassword: 'a different long passphrase',
    });
    expect(changed.status).toBe(200);
    expect(await userCount(user.id, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')).toBe(1);
    expect((await refreshWith(other)).status).toBe(401);
    const mine = await refreshWith(user.refreshToken);
    expect(mine.status).toBe(200);
    // The new access token carries the new token version, which the object now holds.
    const { accessToken } = await mine.json<{ accessToken: string }>();
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${accessToken}` })).status).toBe(200);
  });
});

describe('sessions made before user objects move in on first use, nobody signed out', () => {
  it('an old access token keeps working; the old refresh token rotates once into the object, and its D1 rows are marked', async () => {
    const { id } = await makeUser();
    const workspaceId = await createOwnedWorkspace(env, id, 'Old', null);
    const old = await legacySession(id);
    // The access token is honoured: the workspace's object asks the user's object, which moves the session in.
    expect((await call('POST', '/api/sync/pull', old.headers, { scope: { workspaceId }, cursor: 0 })).status).toBe(200);
    expect(await userCount(id, 'SELECT count(*) AS n FROM sessions WHERE id = ? AND revoked_at IS NULL', old.sessionId)).toBe(1);
    const d1 = await env.DB.prepare('SELECT revoked_at FROM sessions WHERE id = ?').bind(old.sessionId).first<{ revoked_at: number | null }>();
    expect(d1?.revoked_at).not.toBeNull();

    const rotated = await refreshWith(old.refreshToken);
    expect(rotated.status).toBe(200);
    const child = await rotated.json<{ refreshToken: string; accessToken: string }>();
    expect(child.refreshToken.endsWith(`.${id}`)).toBe(true);
    // A retry of the old token inside the grace window gets the same child (two tabs at upgrade time).
    expect((await (await refreshWith(old.refreshToken)).json<{ refreshToken: string }>()).refreshToken).toBe(child.refreshToken);
    // The child is an ordinary token of the object: it rotates with no D1 query.
    const worker = countingDb(env.DB);
    expect((await refreshWith(child.refreshToken, { DB: worker.db })).status).toBe(200);
    expect(worker.counter.calls).toBe(0);
    // A replay of the old token past that is reuse: the family ends.
    expect((await refreshWith(old.refreshToken, { OR3_BASIC_AUTH_ROTATION_GRACE_MS: '0' })).status).toBe(401);
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${child.accessToken}` })).status).toBe(401);
  });

  it('an old refresh token used first (no request before) moves the session in and refreshes', async () => {
    const { id } = await makeUser();
    const old = await legacySession(id);
    const readObjectCalls = await countUserObjectD1(id); // the object's first use is the count's start
    const res = await refreshWith(old.refreshToken);
    expect(res.status).toBe(200);
    // The one-time move read D1 (one batch) and marked the moved rows; the next refresh reads nothing.
    const moved = await readObjectCalls();
    expect(moved).toBeGreaterThan(0);
    const { accessToken, refreshToken } = await res.json<{ accessToken: string; refreshToken: string }>();
    expect((await refreshWith(refreshToken)).status).toBe(200);
    expect(await readObjectCalls()).toBe(moved);
    expect((await call('GET', '/api/auth/session', { authorization: `Bearer ${accessToken}` })).status).toBe(200);
    expect(await userRows(id, 'SELECT user_agent FROM sessions')).toEqual([{ user_agent: 'old-release' }]);
  });

  it('an old session signs out by its refresh token, and a revoked old session does not move', async () => {
    const { id } = await makeUser();
    const old = await legacySession(id);
    const ended = await legacySession(id);
    await env.DB.prepare('UPDATE sessions SET revoked_at = ? WHERE id = ?').bind(Date.now(), ended.sessionId).run();
    expect(
      (await apiWithEnv({}, '/api/basic-auth/sign-out', { method: 'POST', headers: bearer, body: JSON.stringify({ refreshToken: old.refreshToken }) })).status,
    ).toBe(200);
    expect((await refreshWith(old.refreshToken)).status).toBe(401);
    expect((await refreshWith(ended.refreshToken)).status).toBe(401);
    expect(await userCount(id, 'SELECT count(*) AS n FROM sessions')).toBe(1);
    expect(await userCount(id, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')).toBe(0);
  });
});

describe('changes travel from the user object to the workspace objects', () => {
  it('sign-out, disabling and a password change reach a workspace that cached the session: the next request is refused', async () => {
    const admin = await signedInUser({ isAdmin: true });
    for (const end of ['sign-out', 'disable', 'password'] as const) {
      const user = await signedInUser();
      const workspaceId = await createOwnedWorkspace(env, user.id, 'Cached', null);
      const pull = () => call('POST', '/api/sync/pull', user.headers, { scope: { workspaceId }, cursor: 0 });
      expect((await pull()).status).toBe(200); // cached now, for 60 s
      expect(await userCount(user.id, 'SELECT count(*) AS n FROM watchers WHERE workspace_id = ?', workspaceId)).toBe(1);
      if (end === 'sign-out') expect((await call('POST', '/api/basic-auth/sign-out', user.headers)).status).toBe(200);
      if (end === 'disable') {
        const res = await call('POST', `/api/admin/users/${user.id}/disable`, { ...admin.headers, 'x-or3-admin-intent': 'admin' });
        expect(res.status).toBe(200);
        expect(await userCount(user.id, 'SELECT count(*) AS n FROM facts WHERE disabled = 1')).toBe(1);
      }
      if (end === 'password') {
        // Another session of the user, which the change ends.
        const other = await apiWithEnv({}, '/api/basic-auth/sign-in', {
          method: 'POST',
          headers: bearer,
          body: JSON.stringify({ email: user.email, password: PASSWORD }),
        });
        const { accessToken } = await other.json<{ accessToken: string }>();
        const otherPull = () => call('POST', '/api/sync/pull', { authorization: `Bearer ${accessToken}` }, { scope: { workspaceId }, cursor: 0 });
        expect((await otherPull()).status).toBe(200);
        await call('POST', '/api/basic-auth/change-password', user.headers, {
          currentPassword: PASSWORD,
          newPassword: 'a different long passphrase',
          confirmNewPassword: 'a different long passphrase',
        });
        expect((await otherPull()).status, end).toBe(401);
        continue;
      }
      expect((await pull()).status, end).toBe(401);
    }
  }, 30_000);
});
