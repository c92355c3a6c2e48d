import { env } from 'cloudflare:workers';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser, type SignedIn } from '../auth/helpers';

let root: SignedIn;
let owner: SignedIn;
const intent = (s: SignedIn) => ({ ...s.headers, 'x-or3-admin-intent': 'admin' });

beforeAll(async () => {
  root = await signedInUser({ isAdmin: true, displayName: 'Root' });
  owner = await signedInUser();
});
afterEach(() => vi.restoreAllMocks());

const mutations = (ws: string, user: string): [string, string, unknown][] => [
  ['PUT', `/api/admin/workspaces/${ws}/members/${user}`, { role: 'viewer' }],
  ['DELETE', `/api/admin/workspaces/${ws}/members/${user}`, undefined],
  ['DELETE', `/api/admin/workspaces/${ws}`, undefined],
  ['POST', `/api/admin/workspaces/${ws}/restore`, undefined],
  ['PUT', `/api/admin/users/${user}/admin`, undefined],
  ['DELETE', `/api/admin/users/${user}/admin`, undefined],
];

describe('admin API access', () => {
  it('refuses everyone but deployment admins, workspace owners included', async () => {
    const ws = await createOwnedWorkspace(env, owner.id, 'Owned', null);
    for (const [method, path, body] of [['GET', '/api/admin/users', undefined], ['GET', '/api/admin/workspaces', undefined], ...mutations(ws, owner.id)] as [
      string,
      string,
      unknown,
    ][]) {
      const res = await call(method, path, intent(owner), body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await res.json()).toMatchObject({ error: 'admin_required' });
      expect((await call(method, path, {}, body)).status).toBe(401);
    }
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM users WHERE id = ? AND is_admin = 1').bind(owner.id).first<{ n: number }>())!;
    expect(n).toBe(0);
  });

  it('requires x-or3-admin-intent: admin on every mutation, not on reads', async () => {
    const ws = await createOwnedWorkspace(env, owner.id, 'Intent', null);
    for (const [method, path, body] of mutations(ws, owner.id)) {
      const res = await call(method, path, root.headers, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await res.json()).toMatchObject({ error: 'admin_intent_required' });
    }
    expect((await call('GET', '/api/admin/users', root.headers)).status).toBe(200);
  });
});

describe('admin API', () => {
  it('lists and searches users, with literal matching of % and _', async () => {
    const special = await signedInUser({ displayName: 'Percent_%_Person' });
    const all = await (await call('GET', '/api/admin/users?limit=200', root.headers)).json<any>();
    expect(all.users.length).toBeGreaterThanOrEqual(3);
    expect(all.users).toContainEqual(expect.objectContaining({ id: root.id, deploymentAdmin: true, email: root.email }));
    const found = await (await call('GET', `/api/admin/users?q=${encodeURIComponent('t_%_p')}`, root.headers)).json<any>();
    expect(found.users.map((u: any) => u.id)).toEqual([special.id]);
    const none = await (await call('GET', `/api/admin/users?q=${encodeURIComponent('%')}`, root.headers)).json<any>();
    expect(none.users.map((u: any) => u.id)).toEqual([special.id]);
    expect((await call('GET', '/api/admin/users?limit=0', root.headers)).status).toBe(400);
    // Escaping and multi-byte characters can push a short query past the 50-byte LIKE cap: 400, not 500.
    expect((await call('GET', `/api/admin/users?q=${encodeURIComponent('%'.repeat(30))}`, root.headers)).status).toBe(400);
    expect((await call('GET', `/api/admin/users?q=${encodeURIComponent('漢'.repeat(20))}`, root.headers)).status).toBe(400);
    expect((await call('GET', '/api/admin/users?bogus=1', root.headers)).status).toBe(400);
  });

  it('pages with nextOffset', async () => {
    const page = await (await call('GET', '/api/admin/users?limit=1', root.headers)).json<any>();
    expect(page.users).toHaveLength(1);
    expect(page.nextOffset).toBe(1);
  });

  it('upserts, re-roles and removes members, keeping an owner', async () => {
    const ws = await createOwnedWorkspace(env, owner.id, 'Managed', null);
    const member = await signedInUser();
    expect((await call('PUT', `/api/admin/workspaces/${ws}/members/${member.id}`, intent(root), { role: 'editor' })).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${ws}/members`, member.headers)).status).toBe(200);
    expect((await call('PUT', `/api/admin/workspaces/${ws}/members/${member.id}`, intent(root), { role: 'viewer' })).status).toBe(200);
    expect((await call('PUT', `/api/admin/workspaces/${ws}/members/${owner.id}`, intent(root), { role: 'viewer' })).status).toBe(409);
    expect((await call('DELETE', `/api/admin/workspaces/${ws}/members/${owner.id}`, intent(root))).status).toBe(409);
    expect((await call('DELETE', `/api/admin/workspaces/${ws}/members/${member.id}`, intent(root))).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${ws}/members`, member.headers)).status).toBe(403);
    expect((await call('PUT', `/api/admin/workspaces/${ws}/members/${crypto.randomUUID()}`, intent(root), { role: 'viewer' })).status).toBe(404);
    expect((await call('PUT', `/api/admin/workspaces/${crypto.randomUUID()}/members/${member.id}`, intent(root), { role: 'viewer' })).status).toBe(404);
  });

  it('soft-deletes and restores a workspace; members lose and regain access', async () => {
    const ws = await createOwnedWorkspace(env, owner.id, 'Restorable', null);
    expect((await call('DELETE', `/api/admin/workspaces/${ws}`, intent(root))).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${ws}/members`, owner.headers)).status).toBe(403);
    const listed = await (await call('GET', '/api/admin/workspaces?includeDeleted=true&q=Restorable', root.headers)).json<any>();
    expect(listed.workspaces).toContainEqual(expect.objectContaining({ id: ws, memberCount: 1, deletedAt: expect.any(String) }));
    const hidden = await (await call('GET', '/api/admin/workspaces?q=Restorable', root.headers)).json<any>();
    expect(hidden.workspaces.map((w: any) => w.id)).not.toContain(ws);
    expect((await call('POST', `/api/admin/workspaces/${ws}/restore`, intent(root))).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${ws}/members`, owner.headers)).status).toBe(200);
  });

  it('grants and revokes deployment admin; the last admin cannot be revoked', async () => {
    const { results } = await env.DB.prepare('SELECT id FROM users WHERE is_admin = 1').all<{ id: string }>();
    const helper = await signedInUser();
    expect((await call('PUT', `/api/admin/users/${helper.id}/admin`, intent(root))).status).toBe(200);
    expect((await call('GET', '/api/admin/users', helper.headers)).status).toBe(200);
    const session = await (await call('GET', '/api/auth/session', helper.headers)).json<any>();
    expect(session.session.deploymentAdmin).toBe(true);
    // Revoke every admin but the helper; the helper is then the last one.
    for (const { id } of [...results, { id: root.id }]) await call('DELETE', `/api/admin/users/${id}/admin`, intent(helper));
    const res = await call('DELETE', `/api/admin/users/${helper.id}/admin`, intent(helper));
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'last_admin' });
    expect((await call('GET', '/api/admin/users', root.headers)).status).toBe(403);
    // A disabled admin does not count as the remaining one.
    const sleeper = await signedInUser();
    await call('PUT', `/api/admin/users/${sleeper.id}/admin`, intent(helper));
    await env.DB.prepare('UPDATE users SET disabled_at = ? WHERE id = ?').bind(Date.now(), sleeper.id).run();
    expect((await call('DELETE', `/api/admin/users/${helper.id}/admin`, intent(helper))).status).toBe(409);
    // Restore root for the rest of the file.
    expect((await call('PUT', `/api/admin/users/${root.id}/admin`, intent(helper))).status).toBe(200);
  });

  it('writes an audit line for each mutation, naming the actor', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((s) => void lines.push(String(s)));
    const ws = await createOwnedWorkspace(env, owner.id, 'Audited', null);
    await upsertMember(env, ws, owner.id, 'owner');
    await call('DELETE', `/api/admin/workspaces/${ws}`, intent(root));
    const events = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'audit');
    expect(events).toContainEqual(expect.objectContaining({ audit: 'admin.workspace.deleted', actorId: root.id, workspaceId: ws }));
  });
});
