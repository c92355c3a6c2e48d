/** OR3's workspace admin routes, with OR3's shapes (docs/admin.md "OR3's workspace admin routes"). */
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { call, PASSWORD, signedInUser, uniqueEmail, type SignedIn } from '../auth/helpers';
import { syncUser } from '../sync/helpers';

let root: SignedIn;
const intent = (s: { headers: Record<string, string> }) => ({ ...s.headers, 'x-or3-admin-intent': 'admin' });
const role = async (ws: string, user: string) =>
  (await env.DB.prepare('SELECT role FROM members WHERE workspace_id = ? AND user_id = ?').bind(ws, user).first<{ role: string }>())?.role ?? null;

beforeAll(async () => {
  root = await signedInUser({ isAdmin: true });
});

describe('invites', () => {
  it("creates (OR3's shape), lists and revokes; the token works at register and at accept", async () => {
    const owner = await syncUser();
    const res = await call('POST', '/api/admin/workspace/invites/create', intent(owner), {
      email: 'New.Person@Example.com',
      role: 'editor',
      expiresInSeconds: 3600,
    });
    expect(res.status).toBe(200);
    const { invite } = await res.json<any>();
    expect(invite).toMatchObject({ email: 'new.person@example.com', role: 'editor', inviteUrl: `/?invite=${encodeURIComponent(invite.token)}` });
    expect(invite.expiresAt).toBeGreaterThan(Date.now() / 1000 + 3500);
    expect(invite.expiresAt).toBeLessThanOrEqual(Date.now() / 1000 + 3600);

    const list = await (await call('GET', '/api/admin/workspace/invites/list', owner.headers)).json<any>();
    // The invitee's address comes back (stored lower-cased; D1 migration 0003_invite_email).
    expect(list.invites).toEqual([
      expect.objectContaining({ id: invite.id, email: 'new.person@example.com', role: 'editor', status: 'pending', invitedByUserId: owner.id }),
    ]);
    expect(JSON.stringify(list)).not.toContain(invite.token);

    const joiner = await signedInUser();
    expect((await call('POST', '/api/workspaces/invites/accept', joiner.headers, { inviteToken: invite.token })).status).toBe(200);
    expect(await role(owner.workspaceId, joiner.id)).toBe('editor');

    const second = (await (await call('POST', '/api/admin/workspace/invites/create', intent(owner), { email: uniqueEmail() })).json<any>()).invite;
    expect(second.role).toBe('viewer');
    expect((await call('POST', '/api/admin/workspace/invites/revoke', intent(owner), { inviteId: second.id })).status).toBe(200);
    expect((await call('POST', '/api/admin/workspace/invites/revoke', intent(owner), { inviteId: second.id })).status).toBe(404);
    const refused = uniqueEmail();
    expect(
      (await call('POST', '/api/basic-auth/register', {}, { email: refused, password: PASSWORD, confirmPassword: PASSWORD, inviteToken: second.token })).status,
    ).toBe(403);
    const third = (await (await call('POST', '/api/admin/workspace/invites/create', intent(owner), { email: uniqueEmail() })).json<any>()).invite;
    const email = uniqueEmail();
    expect(
      (await call('POST', '/api/basic-auth/register', {}, { email, password: PASSWORD, confirmPassword: PASSWORD, inviteToken: third.token })).status,
    ).toBe(200);
    const joined = await env.DB.prepare('SELECT m.role FROM users u JOIN members m ON m.user_id = u.id WHERE u.email = ? AND m.workspace_id = ?')
      .bind(email, owner.workspaceId)
      .first<{ role: string }>();
    expect(joined?.role).toBe('viewer');
  });

  it('bounds expiry to 60 s – 30 d and refuses bad bodies (400)', async () => {
    const owner = await syncUser();
    for (const body of [
      { email: uniqueEmail(), expiresInSeconds: 59 },
      { email: uniqueEmail(), expiresInSeconds: 30 * 86400 + 1 },
      { email: 'nope' },
      { email: uniqueEmail(), role: 'admin' },
      {},
    ]) {
      expect((await call('POST', '/api/admin/workspace/invites/create', intent(owner), body)).status, JSON.stringify(body)).toBe(400);
    }
    expect((await call('GET', '/api/admin/workspace/invites/list?limit=0', owner.headers)).status).toBe(400);
  });

  it('a deployment admin acts on any workspace by workspaceId; others get 403, a missing intent 403', async () => {
    const owner = await syncUser();
    const editor = await signedInUser();
    await upsertMember(env, owner.workspaceId, editor.id, 'editor');
    const made = await call('POST', '/api/admin/workspace/invites/create', intent(root), { workspaceId: owner.workspaceId, email: uniqueEmail() });
    expect(made.status).toBe(200);
    const list = await (await call('GET', `/api/admin/workspace/invites/list?workspaceId=${owner.workspaceId}`, root.headers)).json<any>();
    expect(list.invites).toHaveLength(1);
    expect((await call('POST', '/api/admin/workspace/invites/create', intent(editor), { workspaceId: owner.workspaceId, email: uniqueEmail() })).status).toBe(
      403,
    );
    expect((await call('POST', '/api/admin/workspace/invites/create', owner.headers, { email: uniqueEmail() })).status).toBe(403);
    expect((await call('POST', '/api/admin/workspace/invites/create', intent(root), { workspaceId: crypto.randomUUID(), email: uniqueEmail() })).status).toBe(
      404,
    );
  });
});

describe('members', () => {
  it('upserts by email or id, sets roles and removes, protecting the last owner (409)', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    expect(
      (await call('POST', '/api/admin/workspace/members/upsert', intent(owner), { emailOrProviderId: member.email.toUpperCase(), role: 'viewer' })).status,
    ).toBe(200);
    expect(await role(owner.workspaceId, member.id)).toBe('viewer');
    expect((await call('POST', '/api/admin/workspace/members/set-role', intent(owner), { userId: member.id, role: 'owner' })).status).toBe(200);
    expect(await role(owner.workspaceId, member.id)).toBe('owner');
    expect((await call('POST', '/api/admin/workspace/members/remove', intent(owner), { userId: member.id })).status).toBe(200);
    expect(await role(owner.workspaceId, member.id)).toBeNull();

    const demote = await call('POST', '/api/admin/workspace/members/set-role', intent(owner), { userId: owner.id, role: 'editor' });
    expect(demote.status).toBe(409);
    expect(await demote.json()).toMatchObject({ error: 'last_owner' });
    expect((await call('POST', '/api/admin/workspace/members/remove', intent(root), { workspaceId: owner.workspaceId, userId: owner.id })).status).toBe(409);
    expect(await role(owner.workspaceId, owner.id)).toBe('owner');

    expect((await call('POST', '/api/admin/workspace/members/upsert', intent(owner), { emailOrProviderId: uniqueEmail(), role: 'viewer' })).status).toBe(404);
    expect((await call('POST', '/api/admin/workspace/members/set-role', intent(owner), { userId: crypto.randomUUID(), role: 'viewer' })).status).toBe(404);
    expect((await call('POST', '/api/admin/workspace/members/upsert', intent(owner), { emailOrProviderId: member.id, role: 'boss' })).status).toBe(400);
  });
});

describe('guest access and search-users', () => {
  it("guest access is stored and answered on OR3's workspace page, with members in OR3's shape", async () => {
    const owner = await syncUser();
    const editor = await signedInUser();
    await upsertMember(env, owner.workspaceId, editor.id, 'editor');
    const page = async (who: { headers: Record<string, string> }, query = '') => call('GET', `/api/admin/workspace${query}`, who.headers);
    const first = await (await page(owner)).json<any>();
    expect(first).toMatchObject({ workspace: { id: owner.workspaceId }, role: 'owner', enabledPlugins: [], guestAccessEnabled: false });
    expect(first.members).toEqual(
      expect.arrayContaining([
        { userId: owner.id, role: 'owner', email: expect.any(String) },
        { userId: editor.id, role: 'editor', email: editor.email },
      ]),
    );
    expect((await call('POST', '/api/admin/workspace/guest-access/set', intent(owner), { enabled: true })).status).toBe(200);
    expect((await (await page(owner)).json<any>()).guestAccessEnabled).toBe(true);
    expect((await call('POST', '/api/admin/workspace/guest-access/set', intent(owner), { enabled: false })).status).toBe(200);
    expect((await (await page(owner)).json<any>()).guestAccessEnabled).toBe(false);
    // A deployment admin names any workspace and acts as owner; nobody else may.
    expect(await (await page(root, `?workspaceId=${owner.workspaceId}`)).json<any>()).toMatchObject({ role: 'owner', workspace: { id: owner.workspaceId } });
    expect((await page(editor, `?workspaceId=${owner.workspaceId}`)).status).toBe(403);
    expect((await page(await signedInUser(), `?workspaceId=${owner.workspaceId}`)).status).toBe(403);
    expect((await page(root, '?workspaceId=no-such-workspace')).status).toBe(404);
    expect((await page(owner, '?other=1')).status).toBe(400);
    expect((await call('GET', '/api/admin/workspace', {})).status).toBe(401);
    // Bad input, the intent header, and wrong users on the setter.
    expect((await call('POST', '/api/admin/workspace/guest-access/set', intent(owner), { enabled: 'yes' })).status).toBe(400);
    expect((await call('POST', '/api/admin/workspace/guest-access/set', owner.headers, { enabled: true })).status).toBe(403);
    expect((await call('POST', '/api/admin/workspace/guest-access/set', intent(editor), { workspaceId: owner.workspaceId, enabled: true })).status).toBe(403);
    expect((await (await page(owner)).json<any>()).guestAccessEnabled).toBe(false);
  });

  it('searches users for deployment admins only, literally and bounded', async () => {
    const target = await signedInUser({ displayName: 'Zebra_%_Keeper' });
    const found = await (await call('GET', `/api/admin/search-users?q=${encodeURIComponent('a_%_k')}`, root.headers)).json<any>();
    expect(found).toEqual([{ userId: target.id, email: target.email, displayName: 'Zebra_%_Keeper' }]);
    expect(await (await call('GET', '/api/admin/search-users?q=', root.headers)).json()).toEqual([]);
    expect((await call('GET', `/api/admin/search-users?q=${'%'.repeat(30)}`, root.headers)).status).toBe(400);
    const owner = await syncUser();
    expect((await call('GET', '/api/admin/search-users?q=zebra', owner.headers)).status).toBe(403);
    const ws = await createOwnedWorkspace(env, owner.id, 'x', null);
    expect(ws).toBeTruthy();
  });
});
