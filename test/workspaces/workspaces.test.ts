import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { createWorkspace, upsertMember } from '../../src/workspaces/store';
import { api } from '../helpers';
import { call, signInCookies, signedInUser, makeUser, type SignedIn } from '../auth/helpers';

type RoleName = 'owner' | 'editor' | 'viewer' | 'outsider';
let users: Record<RoleName, SignedIn>;

beforeAll(async () => {
  const [owner, editor, viewer, outsider] = await Promise.all([signedInUser(), signedInUser(), signedInUser(), signedInUser()]);
  users = { owner: owner!, editor: editor!, viewer: viewer!, outsider: outsider! };
});

/** A fresh workspace with one member of each role, plus an extra viewer to act on. */
async function team() {
  const id = await createWorkspace(env.DB, users.owner.id, 'Team', null);
  await upsertMember(env.DB, id, users.editor.id, 'editor');
  await upsertMember(env.DB, id, users.viewer.id, 'viewer');
  const extra = await makeUser();
  await upsertMember(env.DB, id, extra.id, 'viewer');
  return { id, extra: extra.id };
}

const matrix: [string, string, (w: { id: string; extra: string }) => string, unknown, RoleName[]][] = [
  ['rename', 'PATCH', (w) => `/api/workspaces/${w.id}`, { name: 'Renamed' }, ['owner', 'editor']],
  ['delete', 'DELETE', (w) => `/api/workspaces/${w.id}`, undefined, ['owner']],
  ['set active', 'POST', () => '/api/workspaces/active', undefined, ['owner', 'editor', 'viewer']],
  ['list members', 'GET', (w) => `/api/workspaces/${w.id}/members`, undefined, ['owner', 'editor', 'viewer']],
  ['change a role', 'PUT', (w) => `/api/workspaces/${w.id}/members/${w.extra}`, { role: 'editor' }, ['owner']],
  ['remove a member', 'DELETE', (w) => `/api/workspaces/${w.id}/members/${w.extra}`, undefined, ['owner']],
  ['create an invite', 'POST', (w) => `/api/workspaces/${w.id}/invites`, { role: 'viewer' }, ['owner']],
];

describe('workspace role matrix', () => {
  for (const [name, method, path, body, allowed] of matrix) {
    it(`${name}: allowed for ${allowed.join(', ')}; 403 for the rest; 401 without auth`, async () => {
      for (const role of ['viewer', 'outsider', 'editor', 'owner'] as RoleName[]) {
        const w = await team();
        const payload = name === 'set active' ? { id: w.id } : body;
        const res = await call(method, path(w), users[role].headers, payload);
        expect(res.status, `${role} → ${name}`).toBe(allowed.includes(role) ? 200 : 403);
      }
      const w = await team();
      expect((await call(method, path(w), {}, name === 'set active' ? { id: w.id } : body)).status).toBe(401);
    });
  }

  it('viewers and outsiders get a reason in the error envelope', async () => {
    const w = await team();
    expect(await (await call('PATCH', `/api/workspaces/${w.id}`, users.viewer.headers, { name: 'x' })).json()).toEqual({
      error: 'insufficient_role',
      message: 'Your role (viewer) does not allow write',
    });
    expect(await (await call('PATCH', `/api/workspaces/${w.id}`, users.outsider.headers, { name: 'x' })).json()).toMatchObject({ error: 'not_member' });
  });
});

describe('workspaces', () => {
  it('creates, lists newest first with the contract fields, renames and soft-deletes', async () => {
    const user = await signedInUser();
    const a = await (await call('POST', '/api/workspaces', user.headers, { name: 'Alpha', description: 'first' })).json<{ id: string }>();
    const before = Date.now();
    // OR3's workspace manager sends null for an empty description.
    const created = await call('POST', '/api/workspaces', user.headers, { name: 'Beta', description: null });
    expect(created.status).toBe(200);
    const b = await created.json<{ id: string }>();
    let list = (await (await call('GET', '/api/workspaces', user.headers)).json<any>()).workspaces;
    expect(list.map((w: any) => w.id)).toEqual([b.id, a.id]);
    expect(list[1]).toEqual({ id: a.id, name: 'Alpha', description: 'first', role: 'owner', createdAt: expect.any(Number), isActive: false });
    expect(list[0].description).toBeNull();
    // createdAt is epoch milliseconds, as OR3 sorts by `b.createdAt - a.createdAt`.
    expect(Number.isInteger(list[0].createdAt)).toBe(true);
    expect(list[0].createdAt).toBeGreaterThanOrEqual(before);
    expect(list[0].createdAt).toBeLessThanOrEqual(Date.now());
    expect(list[0].createdAt).toBeGreaterThanOrEqual(list[1].createdAt);

    expect((await call('PATCH', `/api/workspaces/${a.id}`, user.headers, { name: 'Alpha 2', description: null })).status).toBe(200);
    expect((await call('DELETE', `/api/workspaces/${b.id}`, user.headers)).status).toBe(200);
    list = (await (await call('GET', '/api/workspaces', user.headers)).json<any>()).workspaces;
    expect(list).toEqual([expect.objectContaining({ id: a.id, name: 'Alpha 2', description: null })]);
    // A soft-deleted workspace is gone for its members too.
    expect((await call('GET', `/api/workspaces/${b.id}/members`, user.headers)).status).toBe(403);
    const row = await env.DB.prepare('SELECT deleted_at FROM workspaces WHERE id = ?').bind(b.id).first<{ deleted_at: number }>();
    expect(row?.deleted_at).toBeGreaterThan(0);
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ name: 'x'.repeat(101) }, 'name'],
    [{ name: 'ok', description: 'x'.repeat(1001) }, 'description'],
    [{ name: 'ok', owner: 'me' }, "'owner'"],
    [{}, 'name'],
  ])('rejects %j with 400 naming the field', async (body, field) => {
    const res = await call('POST', '/api/workspaces', users.owner.headers, body);
    expect(res.status).toBe(400);
    expect((await res.json<{ message: string }>()).message).toContain(field);
  });

  it('sets the active workspace only for members', async () => {
    const w = await team();
    expect((await call('POST', '/api/workspaces/active', users.viewer.headers, { id: w.id })).status).toBe(200);
    const { session } = await (await call('GET', '/api/auth/session', users.viewer.headers)).json<any>();
    expect(session.workspace.id).toBe(w.id);
    expect(session.role).toBe('viewer');
    expect((await call('POST', '/api/workspaces/active', users.outsider.headers, { id: w.id })).status).toBe(403);
  });

  it('lists members with emails and roles', async () => {
    const w = await team();
    const { members } = await (await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).json<any>();
    expect(members).toHaveLength(4);
    expect(members).toContainEqual({ userId: users.owner.id, email: users.owner.email, role: 'owner' });
  });
});

describe('IDOR across workspaces', () => {
  it('a user cannot read, change or manage another tenant workspace, existing or not', async () => {
    const w = await team();
    const ghost = crypto.randomUUID();
    for (const id of [w.id, ghost]) {
      for (const [method, path, body] of [
        ['GET', `/api/workspaces/${id}/members`, undefined],
        ['PATCH', `/api/workspaces/${id}`, { name: 'pwned' }],
        ['DELETE', `/api/workspaces/${id}`, undefined],
        ['PUT', `/api/workspaces/${id}/members/${users.outsider.id}`, { role: 'owner' }],
        ['POST', `/api/workspaces/${id}/invites`, { role: 'owner' }],
        ['POST', '/api/workspaces/active', { id }],
      ] as const) {
        const res = await call(method, path, users.outsider.headers, body);
        expect(res.status, `${method} ${path}`).toBe(403);
      }
    }
    const name = await env.DB.prepare('SELECT name FROM workspaces WHERE id = ?').bind(w.id).first<{ name: string }>();
    expect(name?.name).toBe('Team');
  });
});

describe('members and owners', () => {
  it('the last owner can be neither demoted nor removed; with two owners one may step down', async () => {
    const w = await team();
    const owner = users.owner;
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers, { role: 'editor' })).status).toBe(409);
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers)).status).toBe(409);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.editor.id}`, owner.headers, { role: 'owner' })).status).toBe(200);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${owner.id}`, owner.headers, { role: 'viewer' })).status).toBe(200);
    // Now the editor-turned-owner is the last owner.
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${users.editor.id}`, users.editor.headers)).status).toBe(409);
  });

  it('two owners demoting each other at once leave one owner', async () => {
    const w = await team();
    await upsertMember(env.DB, w.id, users.editor.id, 'owner');
    const results = await Promise.all([
      call('PUT', `/api/workspaces/${w.id}/members/${users.editor.id}`, users.owner.headers, { role: 'viewer' }),
      call('PUT', `/api/workspaces/${w.id}/members/${users.owner.id}`, users.editor.headers, { role: 'viewer' }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, expect.any(Number)]);
    const { n } = (await env.DB.prepare("SELECT count(*) AS n FROM members WHERE workspace_id = ? AND role = 'owner'").bind(w.id).first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('any member may leave on their own', async () => {
    const w = await team();
    expect((await call('DELETE', `/api/workspaces/${w.id}/members/${users.viewer.id}`, users.viewer.headers)).status).toBe(200);
    expect((await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).status).toBe(403);
  });

  it('changing the role of a non-member is 404, and an unknown role is 400', async () => {
    const w = await team();
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.outsider.id}`, users.owner.headers, { role: 'viewer' })).status).toBe(404);
    expect((await call('PUT', `/api/workspaces/${w.id}/members/${users.viewer.id}`, users.owner.headers, { role: 'admin' })).status).toBe(400);
  });
});

describe('invites', () => {
  it('an invite is accepted once, with its role; an existing member keeps theirs', async () => {
    const w = await team();
    const create = await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'editor', expiresInSeconds: 3600 });
    const { inviteToken, expiresAt } = await create.json<{ inviteToken: string; expiresAt: string }>();
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3_500_000);
    const joiner = await signedInUser();
    const accepted = await call('POST', '/api/workspaces/invites/accept', joiner.headers, { inviteToken });
    expect(await accepted.json()).toEqual({ ok: true, workspaceId: w.id });
    const { members } = await (await call('GET', `/api/workspaces/${w.id}/members`, joiner.headers)).json<any>();
    expect(members).toContainEqual(expect.objectContaining({ userId: joiner.id, role: 'editor' }));
    expect((await call('POST', '/api/workspaces/invites/accept', users.outsider.headers, { inviteToken })).status).toBe(404);

    const second = await (await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'owner' })).json<{ inviteToken: string }>();
    expect((await call('POST', '/api/workspaces/invites/accept', users.viewer.headers, { inviteToken: second.inviteToken })).status).toBe(200);
    const after = await (await call('GET', `/api/workspaces/${w.id}/members`, users.viewer.headers)).json<any>();
    expect(after.members).toContainEqual(expect.objectContaining({ userId: users.viewer.id, role: 'viewer' }));
  });

  it('stores only a hash of the invite token and bounds its lifetime', async () => {
    const w = await team();
    const { inviteToken } = await (await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer' })).json<{ inviteToken: string }>();
    const { results } = await env.DB.prepare('SELECT * FROM invites WHERE workspace_id = ?').bind(w.id).all();
    expect(JSON.stringify(results)).not.toContain(inviteToken);
    expect((await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer', expiresInSeconds: 10 })).status).toBe(400);
    expect((await call('POST', `/api/workspaces/${w.id}/invites`, users.owner.headers, { role: 'viewer', expiresInSeconds: 365 * 86400 })).status).toBe(400);
  });
});

describe('browser surface on real routes', () => {
  it('refuses a cookie-authenticated workspace creation from a foreign origin, and form posts', async () => {
    const { email } = await makeUser();
    const cookie = `or3_access=${(await signInCookies(email)).access}`;
    const post = (headers: Record<string, string>, body: string) => api('/api/workspaces', { method: 'POST', headers: { cookie, ...headers }, body });
    expect((await post({ origin: 'https://evil.example.net', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ origin: 'https://evil.example.net', 'content-type': 'text/plain' }, '{"name":"x"}')).status).toBe(403);
    expect((await post({ origin: 'https://app.example.com', 'content-type': 'text/plain' }, '{"name":"x"}')).status).toBe(415);
    expect((await post({ origin: 'https://app.example.com', 'content-type': 'application/json' }, '{"name":"x"}')).status).toBe(200);
  });
});
