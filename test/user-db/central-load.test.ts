/**
 * Nothing central on the frequent paths (docs/architecture.md "Central load"): once a user's and
 * a workspace's objects know them, the session endpoint, "my workspaces", a socket's connect and
 * the access cache's fills cost no D1 query — in the Worker or in any object — and sign-in reads
 * D1 once (the user by email).
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { Bindings } from '../../src/env';
import { call, makeUser, PASSWORD, randomIp, signedInUser } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { openSocket, syncUser } from '../sync/helpers';

/** A D1 binding that counts statements by kind: reads (SELECT) and writes (everything else), batches by their statements. */
function classifyingDb(db: D1Database) {
  const counter = { reads: 0, writes: 0 };
  const kindOf = (sql: string) => (/^\s*select\b/i.test(sql) ? 'reads' : 'writes') as 'reads' | 'writes';
  const queries = new WeakMap<object, string>();
  const wrapped = new Proxy(db, {
    get(target, name) {
      if (name === 'prepare')
        return (sql: string) => {
          const statement = target.prepare(sql);
          const bound = new Proxy(statement, {
            get(s, n) {
              const v = Reflect.get(s, n);
              if (typeof v !== 'function') return v;
              if (n === 'bind')
                return (...args: unknown[]) => {
                  const b = (v as (...a: unknown[]) => D1PreparedStatement).apply(s, args);
                  queries.set(b, sql);
                  return new Proxy(b, { get: (bs, bn) => wrap(bs, bn, sql) });
                };
              return wrap(s, n, sql);
            },
          });
          queries.set(statement, sql);
          return bound;
        };
      if (name === 'batch')
        return (statements: D1PreparedStatement[]) => {
          for (const s of statements) counter[kindOf(queries.get(s) ?? '')]++;
          return target.batch(statements.map((s) => s));
        };
      const value = Reflect.get(target, name);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  function wrap(s: D1PreparedStatement, n: string | symbol, sql: string) {
    const v = Reflect.get(s, n);
    if (typeof v !== 'function') return v;
    if (['first', 'all', 'run', 'raw'].includes(String(n))) {
      return (...args: unknown[]) => {
        counter[kindOf(sql)]++;
        return (v as (...a: unknown[]) => unknown).apply(s, args);
      };
    }
    return (v as (...a: unknown[]) => unknown).bind(s);
  }
  return { db: wrapped as D1Database, counter };
}

/** Swaps the D1 binding inside an object for a counting one; returns a reader of its count. */
async function countObjectD1(stub: DurableObjectStub) {
  await runInDurableObject(stub, (instance) => {
    const objectEnv = (instance as unknown as { env: Bindings & { __d1?: { reads: number; writes: number } } }).env;
    const { db, counter } = classifyingDb(objectEnv.DB);
    objectEnv.DB = db;
    objectEnv.__d1 = counter;
  });
  return () => runInDurableObject(stub, (instance) => ({ ...(instance as unknown as { env: { __d1: { reads: number; writes: number } } }).env.__d1 }));
}

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

  it('sign-in reads D1 once (the user by email); the session is made in the user object', async () => {
    const user = await makeUser();
    const worker = classifyingDb(env.DB);
    const signIn = () =>
      apiWithEnv({ DB: worker.db }, '/api/basic-auth/sign-in', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': randomIp() },
        body: JSON.stringify({ email: user.email, password: PASSWORD }),
      });
    expect((await signIn()).status).toBe(200); // first sight: the bootstrap check of this isolate may read too
    worker.counter.reads = 0;
    worker.counter.writes = 0;
    expect((await signIn()).status).toBe(200);
    expect(worker.counter.reads).toBeLessThanOrEqual(1);
  });
});
