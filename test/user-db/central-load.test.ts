/**
 * Nothing central on the frequent paths (docs/architecture.md "Central load"): once a user's and
 * a workspace's objects know them, the session endpoint, "my workspaces", a socket's connect and
 * the access cache's fills cost no D1 query — in the Worker or in any object — and sign-in reads
 * D1 once (the user by email).
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { call, makeUser, PASSWORD, randomIp, signedInUser } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { openSocket, syncUser } from '../sync/helpers';
import { classifyingDb, countObjectD1 } from './d1-count';
import { attemptKey } from '../../src/auth/store';

describe('0 D1 queries on the frequent paths once the objects know the user', () => {
  it('session, my workspaces, and a membership change reaching them: 0 D1 in the Worker and the user object', async () => {
    const owner = await syncUser();
    const member = await syncUser(); // their session and list are known now
    expect((await call('GET', '/api/workspaces', member.headers)).status).toBe(200);
    const admin = await signedInUser({ isAdmin: true });
    // Under the test pool the objects share the test's env, so this counts every D1 query anywhere.
    const readUser = await countObjectD1(env.USER_DB.getByName(member.id) as unknown as DurableObjectStub);
    const worker = classifyingDb(env.DB);
    const get = (path: string) => apiWithEnv({ DB: worker.db }, path, { headers: member.headers });
    for (let i = 0; i < 3; i++) {
      const session = await (await get('/api/auth/session')).json<any>();
      expect(session.session.workspace.id).toBe(member.workspaceId);
      expect(session.session.role).toBe('owner');
      const mine = await (await get('/api/workspaces')).json<any>();
      expect(mine.workspaces.map((w: any) => w.id)).toEqual([member.workspaceId]);
    }
    expect(worker.counter).toEqual({ reads: 0, writes: 0 });
    expect(await readUser()).toEqual({ reads: 0, writes: 0 });

    // An admin adds them elsewhere (the write path's own D1 copy is not what this counts): the
    // workspace's object tells the member's object, and "my workspaces" shows it at once, with no
    // further D1 query anywhere.
    const put = await call(
      'PUT',
      `/api/admin/workspaces/${owner.workspaceId}/members/${member.id}`,
      { ...admin.headers, 'x-or3-admin-intent': 'admin' },
      { role: 'viewer' },
    );
    expect(put.status).toBe(200);
    const atWrite = await readUser();
    const after = await (await get('/api/workspaces')).json<any>();
    expect(after.workspaces.find((w: any) => w.id === owner.workspaceId)).toMatchObject({ role: 'viewer', isActive: false });
    expect(worker.counter).toEqual({ reads: 0, writes: 0 });
    expect(await readUser()).toEqual(atWrite);
  }, 30_000);

  it('a socket connects and its workspace object fills its cache with 0 D1 queries', async () => {
    const u = await syncUser();
    const readWorkspace = await countObjectD1(env.WORKSPACE.getByName(u.workspaceId) as unknown as DurableObjectStub);
    const readUser = await countObjectD1(env.USER_DB.getByName(u.id) as unknown as DurableObjectStub);
    const worker = classifyingDb(env.DB);
    const socket = await openSocket(
      await apiWithEnv({ DB: worker.db }, `/api/sync/ws?workspaceId=${u.workspaceId}&deviceId=d-central`, { headers: { upgrade: 'websocket', ...u.headers } }),
    );
    await socket.next((m) => m.type === 'hello');
    socket.ws.close();
    expect(worker.counter).toEqual({ reads: 0, writes: 0 });
    expect(await readWorkspace()).toEqual({ reads: 0, writes: 0 });
    expect(await readUser()).toEqual({ reads: 0, writes: 0 });
  });

  it('sign-in reads D1 once (the user by email) and writes nothing there, success or failure; the backoff counts in its own object', async () => {
    const user = await makeUser();
    const worker = classifyingDb(env.DB);
    const signIn = (email: string, password: string) =>
      apiWithEnv({ DB: worker.db }, '/api/basic-auth/sign-in', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': randomIp() },
        body: JSON.stringify({ email, password }),
      });
    expect((await signIn(user.email, PASSWORD)).status).toBe(200); // first sight: the bootstrap check of this isolate may read too
    const cases: [string, string, number][] = [
      [user.email, PASSWORD, 200],
      [user.email, 'a wrong guess!', 401],
      [`nobody-${crypto.randomUUID()}@example.com`, 'a wrong guess!', 401],
    ];
    for (const [email, password, status] of cases) {
      worker.counter.reads = 0;
      worker.counter.writes = 0;
      expect((await signIn(email, password)).status).toBe(status);
      expect(worker.counter.reads, `${email} ${status}`).toBeLessThanOrEqual(1);
      expect(worker.counter.writes, `${email} ${status}`).toBe(0);
    }
    // The failures were counted, the unknown email's too (counting must not depend on the account
    // existing), in the objects of their keys; the success before cleared its counter.
    expect(await env.LOGIN_ATTEMPTS.getByName(await attemptKey.signIn(user.email)).state()).toMatchObject({ failures: 1 });
    expect(await env.LOGIN_ATTEMPTS.getByName(await attemptKey.signIn(cases[2]![0])).state()).toMatchObject({ failures: 1 });
    // The object is named by the email's hash, not the address.
    expect(await attemptKey.signIn(user.email.toUpperCase())).toMatch(/^signin:[0-9a-f]{64}$/);
    expect(await attemptKey.signIn(user.email.toUpperCase())).toBe(await attemptKey.signIn(user.email));
    expect(worker.statements.some((sql) => /login_failures/i.test(sql))).toBe(false);
  });

  it('change-password writes only the password to D1 (its backoff counts in its own object)', async () => {
    const user = await signedInUser();
    const worker = classifyingDb(env.DB);
    const next = 'a brand new passphrase';
    const res = await apiWithEnv({ DB: worker.db }, '/api/basic-auth/change-password', {
      method: 'POST',
      headers: { ...user.headers, 'content-type': 'application/json', 'x-or3-token-transport': 'bearer' },
      body: JSON.stringify({ currentPassword: PASSWORD, newPassword: next, confirmNewPassword: next }),
    });
    expect(res.status).toBe(200);
    expect(worker.counter.writes).toBe(1);
    expect(worker.statements.filter((sql) => !/^\s*select\b/i.test(sql)).every((sql) => /^\s*update users\b/i.test(sql))).toBe(true);
    expect(await env.LOGIN_ATTEMPTS.getByName(`cpw:${user.id}`).state()).toBeNull(); // counted, then cleared
  });
});
