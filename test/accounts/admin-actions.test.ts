/** Account actions of deployment admins: disable/enable, sign-out, reset-password, delete (docs/admin.md "Account actions"). */
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { api } from '../helpers';
import { call, PASSWORD, signedInUser, signInBearer, type SignedIn, userCount } from '../auth/helpers';
import { message, op, openSocket, pull, push, pushOk, syncUser } from '../sync/helpers';
import { createToken, messages } from '../service/helpers';

let root: SignedIn;
const intent = (s: SignedIn) => ({ ...s.headers, 'x-or3-admin-intent': 'admin' });
const NEW_PASSWORD = 'a freshly reset passphrase 7';
const count = async (sql: string, ...args: unknown[]) =>
  (await env.DB.prepare(sql)
    .bind(...args)
    .first<{ n: number }>())!.n;

beforeAll(async () => {
  root = await signedInUser({ isAdmin: true });
});

const actions = (id: string): [string, string, unknown][] => [
  ['POST', `/api/admin/users/${id}/disable`, undefined],
  ['POST', `/api/admin/users/${id}/enable`, undefined],
  ['POST', `/api/admin/users/${id}/sign-out`, undefined],
  ['POST', `/api/admin/users/${id}/reset-password`, undefined],
  ['DELETE', `/api/admin/users/${id}`, { delete: true }],
];

describe('account actions: who may', () => {
  it('refuses a workspace owner who is not a deployment admin (403), and changes nothing', async () => {
    const owner = await syncUser();
    const target = await signedInUser();
    await upsertMember(env, owner.workspaceId, target.id, 'editor');
    for (const [method, path, body] of actions(target.id)) {
      const res = await call(method, path, intent(owner), body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await res.json()).toMatchObject({ error: 'admin_required' });
    }
    expect((await call('GET', '/api/auth/session', target.headers)).status).toBe(200);
    expect((await (await call('GET', '/api/auth/session', target.headers)).json<any>()).session.user.id).toBe(target.id);
  });

  it('refuses a mutation without the intent header (403) and nothing changes', async () => {
    const target = await signedInUser();
    for (const [method, path, body] of actions(target.id)) {
      const res = await call(method, path, root.headers, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await res.json()).toMatchObject({ error: 'admin_intent_required' });
    }
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ? AND disabled_at IS NULL', target.id)).toBe(1);
    expect(await userCount(target.id, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')).toBe(1);
    expect((await (await call('GET', '/api/auth/session', target.headers)).json<any>()).session.user.id).toBe(target.id);
  });

  it('answers 404 for unknown users and 400 for bad ids and bodies', async () => {
    const ghost = crypto.randomUUID();
    for (const [method, path, body] of actions(ghost)) {
      expect((await call(method, path, intent(root), body)).status, `${method} ${path}`).toBe(404);
    }
    expect((await call('POST', `/api/admin/users/${'x'.repeat(500)}/disable`, intent(root))).status).toBe(400);
    const target = await signedInUser();
    for (const body of [undefined, {}, { delete: false }, { transferTo: '' }, { delete: true, transferTo: root.id }, { bogus: 1 }]) {
      expect((await call('DELETE', `/api/admin/users/${target.id}`, intent(root), body)).status, JSON.stringify(body)).toBe(400);
    }
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ?', target.id)).toBe(1);
  });
});

describe('disable and enable', () => {
  it("closes the user's open socket, makes their next request 401 everywhere, and sign-in fails until enabled", async () => {
    const u = await syncUser();
    const other = await signInBearer(u.email);
    // Warm the workspace object's cached facts, then open a socket.
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
    await socket.next((m) => m.type === 'hello');

    expect((await call('POST', `/api/admin/users/${u.id}/disable`, intent(root))).status).toBe(200);
    expect((await socket.closed).code).toBe(4001);
    // The very next request, at the workspace object and at the Worker, with either session.
    expect((await push(u, u.workspaceId, [op('messages', 'm2', message('m2'))])).status).toBe(401);
    expect((await push({ headers: other.headers }, u.workspaceId, [op('messages', 'm3', message('m3'))])).status).toBe(401);
    expect((await call('GET', '/api/workspaces', u.headers)).status).toBe(401);
    expect((await call('POST', '/api/basic-auth/refresh', {}, { refreshToken: u.refreshToken })).status).toBe(401);
    expect((await signInBearer(u.email)).res.status).toBe(401);

    expect((await call('POST', `/api/admin/users/${u.id}/enable`, intent(root))).status).toBe(200);
    // Enabling revives none of the ended sessions; a new sign-in works.
    expect((await call('GET', '/api/workspaces', u.headers)).status).toBe(401);
    const again = await signInBearer(u.email);
    expect(again.res.status).toBe(200);
    expect((await pushOk({ headers: again.headers }, u.workspaceId, [op('messages', 'm4', message('m4'))])).serverVersion).toBe(2);
  });

  it('ends the service tokens the user created (401 from the next request); tokens of other owners live on', async () => {
    const u = await syncUser();
    const coOwner = await signedInUser();
    await upsertMember(env, u.workspaceId, coOwner.id, 'owner');
    const mine = await createToken(u, u.workspaceId);
    const theirs = await createToken(coOwner, u.workspaceId);
    expect((await messages(mine.token, u.workspaceId, 't1')).status).toBe(200);
    expect((await call('POST', `/api/admin/users/${u.id}/disable`, intent(root))).status).toBe(200);
    expect((await messages(mine.token, u.workspaceId, 't1')).status).toBe(401);
    expect((await messages(theirs.token, u.workspaceId, 't1')).status).toBe(200);
    // Enabling revives none of them either.
    expect((await call('POST', `/api/admin/users/${u.id}/enable`, intent(root))).status).toBe(200);
    expect((await messages(mine.token, u.workspaceId, 't1')).status).toBe(401);
  });

  it('never disables the last enabled admin (409 last_admin)', async () => {
    await env.DB.prepare('UPDATE users SET is_admin = 0 WHERE id != ?').bind(root.id).run();
    const res = await call('POST', `/api/admin/users/${root.id}/disable`, intent(root));
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'last_admin' });
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ? AND disabled_at IS NULL', root.id)).toBe(1);
  });
});

describe('sign-out', () => {
  it('ends every session and closes sockets; the user may sign in again', async () => {
    const u = await syncUser();
    const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${u.workspaceId}`, { headers: { upgrade: 'websocket', ...u.headers } }));
    await socket.next((m) => m.type === 'hello');
    expect((await call('POST', `/api/admin/users/${u.id}/sign-out`, intent(root))).status).toBe(200);
    expect((await socket.closed).code).toBe(4001);
    expect((await push(u, u.workspaceId, [op('messages', 'm1', message('m1'))])).status).toBe(401);
    expect((await call('POST', '/api/basic-auth/refresh', {}, { refreshToken: u.refreshToken })).status).toBe(401);
    expect((await signInBearer(u.email)).res.status).toBe(200);
  });
});

describe('reset-password', () => {
  it('answers a one-time link that ends sessions, works once, and expires', async () => {
    const u = await signedInUser();
    const res = await call('POST', `/api/admin/users/${u.id}/reset-password`, intent(root));
    expect(res.status).toBe(200);
    const { resetUrl, expiresAt } = await res.json<{ resetUrl: string; expiresAt: string }>();
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
    expect((await call('GET', '/api/workspaces', u.headers)).status).toBe(401);
    const token = new URL(resetUrl).searchParams.get('token')!;
    const redeem = (t: string, pw = NEW_PASSWORD) => call('POST', '/api/basic-auth/reset-password', {}, { token: t, newPassword: pw, confirmNewPassword: pw });

    expect((await redeem(token, 'short')).status).toBe(400); // weak: nothing used up
    expect((await redeem(`${token}x`)).status).toBe(400);
    expect((await redeem(token)).status).toBe(200);
    expect((await redeem(token)).status).toBe(400); // once
    expect((await signInBearer(u.email, PASSWORD)).res.status).toBe(401);
    expect((await signInBearer(u.email, NEW_PASSWORD)).res.status).toBe(200);
  });

  it('refuses an expired link with 410', async () => {
    const u = await signedInUser();
    const { resetUrl } = await (await call('POST', `/api/admin/users/${u.id}/reset-password`, intent(root))).json<{ resetUrl: string }>();
    const token = new URL(resetUrl).searchParams.get('token')!;
    const realNow = Date.now;
    Date.now = () => realNow() + 2 * 3600 * 1000;
    try {
      const res = await call('POST', '/api/basic-auth/reset-password', {}, { token, newPassword: NEW_PASSWORD, confirmNewPassword: NEW_PASSWORD });
      expect(res.status).toBe(410);
    } finally {
      Date.now = realNow;
    }
    expect((await signInBearer(u.email, PASSWORD)).res.status).toBe(200);
  });
});

describe('delete', () => {
  it('transfers workspaces they alone own, and leaves no session, identity or membership behind', async () => {
    const u = await syncUser();
    const heir = await signedInUser();
    const shared = await createOwnedWorkspace(env, heir.id, 'Shared', null);
    await upsertMember(env, shared, u.id, 'owner'); // not alone: stays with heir
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    await env.DB.prepare(
      `INSERT INTO identities (id, user_id, provider, issuer, subject, email, created_at, last_seen_at) VALUES (?, ?, 'oidc', 'https://idp', ?, null, 0, 0)`,
    )
      .bind(crypto.randomUUID(), u.id, crypto.randomUUID())
      .run();
    const preview = await (await call('GET', `/api/admin/users/${u.id}`, root.headers)).json<any>();
    expect(preview).toMatchObject({ user: { id: u.id, email: u.email }, soleOwnedWorkspaces: [{ id: u.workspaceId, deleted: false }], memberships: 2 });
    expect((await call('GET', `/api/admin/users/${crypto.randomUUID()}`, root.headers)).status).toBe(404);
    expect((await call('GET', `/api/admin/users/${u.id}`, heir.headers)).status).toBe(403);
    const res = await call('DELETE', `/api/admin/users/${u.id}`, intent(root), { transferTo: heir.id });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, workspaces: [u.workspaceId], transferredTo: heir.id });
    for (const table of ['sessions', 'refresh_tokens', 'identities', 'members']) {
      expect(await count(`SELECT count(*) AS n FROM ${table} WHERE user_id = ?`, u.id), table).toBe(0);
    }
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ?', u.id)).toBe(0);
    // The user's object (sessions, refresh tokens) is emptied too.
    expect(await userCount(u.id, 'SELECT count(*) AS n FROM sessions')).toBe(0);
    expect(await userCount(u.id, 'SELECT count(*) AS n FROM refresh_tokens')).toBe(0);
    expect((await push(u, u.workspaceId, [op('messages', 'm2', message('m2'))])).status).toBe(401);
    // The heir owns it and syncs its data at once.
    expect((await pull(heir, u.workspaceId, 0)).changes).toHaveLength(1);
    // The email may register again as a new account.
    expect((await call('POST', '/api/basic-auth/register', {}, { email: u.email, password: PASSWORD, confirmPassword: PASSWORD })).status).toBe(200);
    expect(await count('SELECT count(*) AS n FROM users WHERE email = ? AND id != ?', u.email, u.id)).toBe(1);
  });

  it('deletes workspaces they alone own with { delete: true }; refuses the user themself or an unknown heir, changing nothing', async () => {
    const u = await syncUser();
    for (const body of [{ transferTo: u.id }, { transferTo: crypto.randomUUID() }]) {
      const res = await call('DELETE', `/api/admin/users/${u.id}`, intent(root), body);
      expect([400, 404]).toContain(res.status);
      expect(await count('SELECT count(*) AS n FROM members WHERE user_id = ?', u.id)).toBe(1);
    }
    expect((await call('DELETE', `/api/admin/users/${u.id}`, intent(root), { delete: true })).status).toBe(200);
    expect(await count('SELECT count(*) AS n FROM workspaces WHERE id = ? AND deleted_at IS NOT NULL', u.workspaceId)).toBe(1);
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ?', u.id)).toBe(0);
  });

  it('never deletes the last live admin (409 last_admin)', async () => {
    await env.DB.prepare('UPDATE users SET is_admin = 0 WHERE id != ?').bind(root.id).run();
    const res = await call('DELETE', `/api/admin/users/${root.id}`, intent(root), { delete: true });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'last_admin' });
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ?', root.id)).toBe(1);
  });
});
