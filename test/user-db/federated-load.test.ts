/**
 * A federated token's requests cost no D1 query once the identity is known (docs/architecture.md
 * "Capacity model"): the identity's object (src/identity-db/) remembers the user, read from D1 once
 * per identity ever, and answers from the user's object. The session endpoint's profile stays
 * right, a disabled user is refused at once, and a deleted user's token stops working at once.
 */
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { identityObjectName } from '../../src/identity-db/link';
import { call, oidcProvider, signedInUser, type SignedIn } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { classifyingDb, countObjectD1 } from './d1-count';

const ISSUER = 'https://federated-load.example.com';
let provider: Awaited<ReturnType<typeof oidcProvider>>;
let vars: Record<string, string>;
let admin: SignedIn;
beforeAll(async () => {
  provider = await oidcProvider(ISSUER);
  vars = provider.vars;
  admin = await signedInUser({ isAdmin: true });
});

/** A 10-minute token for `sub` with a verified email and a name. */
const token = (sub: string) => provider.token(sub, `${sub}@example.com`, { email_verified: true, name: 'Fed Person' });

/** A fresh identity: its subject and a request helper carrying its token (and optional env overrides). */
async function identity() {
  const sub = `fed-${crypto.randomUUID()}`;
  const headers = { authorization: `Bearer ${await token(sub)}`, 'content-type': 'application/json' };
  const get = (path: string, overrides: Record<string, unknown> = {}) => apiWithEnv({ ...vars, ...overrides }, path, { headers });
  return { sub, headers, get };
}

const adminCall = (method: string, path: string, body?: unknown) => call(method, path, { ...admin.headers, 'x-or3-admin-intent': 'admin' }, body);

describe('federated principals: 0 D1 once the identity is known', () => {
  it('the session endpoint, my workspaces and a sync pull: 0 D1 statements in the Worker and the objects after the first request', async () => {
    const fed = await identity();
    // First sight: D1 provisions the user and their default workspace (a rare path).
    const first = (await (await fed.get('/api/auth/session')).json<any>()).session;
    expect(first).toMatchObject({
      authenticated: true,
      provider: 'idp',
      providerUserId: fed.sub,
      user: { email: `${fed.sub}@example.com`, displayName: 'Fed Person' },
      role: 'owner',
    });
    const userId = first.user.id as string;
    const readIdentity = await countObjectD1(
      env.IDENTITY.getByName(await identityObjectName({ provider: 'idp', issuer: ISSUER, subject: fed.sub })) as unknown as DurableObjectStub,
    );
    const readUser = await countObjectD1(env.USER_DB.getByName(userId) as unknown as DurableObjectStub);
    const worker = classifyingDb(env.DB);
    for (let i = 0; i < 3; i++) {
      const { session } = await (await fed.get('/api/auth/session', { DB: worker.db })).json<any>();
      expect(session).toEqual(first);
      const mine = await (await fed.get('/api/workspaces', { DB: worker.db })).json<any>();
      expect(mine.workspaces).toMatchObject([{ id: first.workspace.id, role: 'owner', isActive: true }]);
    }
    // The workspace's object fills its access cache for the identity from the identity's object
    // (which knows the user) and the user's: no D1 query there either, even on its first fill.
    const pull = await apiWithEnv({ ...vars, DB: worker.db }, '/api/sync/pull', {
      method: 'POST',
      headers: fed.headers,
      body: JSON.stringify({ scope: { workspaceId: first.workspace.id }, cursor: 0 }),
    });
    expect(pull.status).toBe(200);
    expect(worker.statements).toEqual([]);
    expect(await readIdentity()).toEqual({ reads: 0, writes: 0 });
    expect(await readUser()).toEqual({ reads: 0, writes: 0 });
    // A route that authorizes against one workspace takes the caller's membership with the
    // principal: the members list reads D1 for the list itself (a rare route), nothing else.
    expect((await fed.get(`/api/workspaces/${first.workspace.id}/members`, { DB: worker.db })).status).toBe(200);
    expect(worker.statements).toHaveLength(1);
    expect(worker.statements[0]).toMatch(/FROM members m JOIN users u/);
  });

  it('a disabled federated user is refused at once, and admitted again once enabled', async () => {
    const fed = await identity();
    const { session } = await (await fed.get('/api/auth/session')).json<any>();
    expect((await adminCall('POST', `/api/admin/users/${session.user.id}/disable`)).status).toBe(200);
    expect((await (await fed.get('/api/auth/session')).json<any>()).session).toBeNull();
    expect((await fed.get('/api/workspaces')).status).toBe(401);
    expect((await adminCall('POST', `/api/admin/users/${session.user.id}/enable`)).status).toBe(200);
    expect((await (await fed.get('/api/auth/session')).json<any>()).session.user.id).toBe(session.user.id);
  });

  it("the profile follows the user's object: the active workspace and the deployment-admin flag", async () => {
    const fed = await identity();
    const { session } = await (await fed.get('/api/auth/session')).json<any>();
    expect(session.deploymentAdmin).toBe(false);
    const post = (path: string, body: unknown) => apiWithEnv(vars, path, { method: 'POST', headers: fed.headers, body: JSON.stringify(body) });
    const { id } = await (await post('/api/workspaces', { name: 'Second' })).json<any>();
    expect((await post('/api/workspaces/active', { id })).status).toBe(200);
    const switched = (await (await fed.get('/api/auth/session')).json<any>()).session;
    expect(switched.workspace).toEqual({ id, name: 'Second' });
    expect(switched.role).toBe('owner');
    await env.DB.prepare('UPDATE users SET is_admin = 1 WHERE id = ?').bind(session.user.id).run();
    await env.USER_DB.getByName(session.user.id).reloadFacts(); // what every write of the flag does after D1
    expect((await (await fed.get('/api/auth/session')).json<any>()).session.deploymentAdmin).toBe(true);
  });

  it('an identity with no user (auto-provisioning off) costs D1 one query per OR3_AUTH_CACHE_TTL_SECONDS, not one per request', async () => {
    const fed = await identity();
    const off = { OR3_AUTH_AUTO_PROVISION: 'false' };
    const readIdentity = await countObjectD1(
      env.IDENTITY.getByName(await identityObjectName({ provider: 'idp', issuer: ISSUER, subject: fed.sub })) as unknown as DurableObjectStub,
    );
    const worker = classifyingDb(env.DB);
    for (let i = 0; i < 3; i++) {
      expect((await (await fed.get('/api/auth/session', { ...off, DB: worker.db })).json<any>()).session).toBeNull();
      expect((await fed.get('/api/workspaces', { ...off, DB: worker.db })).status).toBe(401);
    }
    expect(await readIdentity()).toEqual({ reads: 1, writes: 0 }); // the first request's lookup only (the pool's TTL is 60 s)
    expect(worker.counter).toEqual({ reads: 0, writes: 0 });
    // A request that may provision is not answered from that memory: the user is made at once.
    const { session } = await (await fed.get('/api/auth/session')).json<any>();
    expect(session).toMatchObject({ authenticated: true, providerUserId: fed.sub });
    expect((await (await fed.get('/api/auth/session', off)).json<any>()).session.user.id).toBe(session.user.id);
  });

  it('deleting the account makes the token stop working at once (auto-provisioning off: no user; on: a new, empty account)', async () => {
    const fed = await identity();
    const { session } = await (await fed.get('/api/auth/session')).json<any>();
    const pull = () =>
      apiWithEnv(vars, '/api/sync/pull', {
        method: 'POST',
        headers: fed.headers,
        body: JSON.stringify({ scope: { workspaceId: session.workspace.id }, cursor: 0 }),
      });
    expect((await pull()).status).toBe(200);
    expect((await adminCall('DELETE', `/api/admin/users/${session.user.id}`, { delete: true })).status).toBe(200);
    expect((await (await fed.get('/api/auth/session', { OR3_AUTH_AUTO_PROVISION: 'false' })).json<any>()).session).toBeNull();
    expect((await fed.get('/api/workspaces', { OR3_AUTH_AUTO_PROVISION: 'false' })).status).toBe(401);
    expect((await pull()).status).not.toBe(200);
    // With auto-provisioning on (the default) the identity gets a fresh account, as on a first sight.
    const again = (await (await fed.get('/api/auth/session')).json<any>()).session;
    expect(again.user.id).not.toBe(session.user.id);
    expect(again.workspace.id).not.toBe(session.workspace.id);
    expect((await pull()).status).not.toBe(200);
  });
});
