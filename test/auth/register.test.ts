import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { api, apiWithEnv } from '../helpers';
import { PASSWORD, call, randomIp, signInBearer, signedInUser, uniqueEmail } from './helpers';

const body = (email: string, extra: Record<string, unknown> = {}) => ({ email, password: PASSWORD, confirmPassword: PASSWORD, ...extra });
const register = (payload: unknown, overrides: Record<string, unknown> = {}) =>
  apiWithEnv(overrides, '/api/basic-auth/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
    body: JSON.stringify(payload),
  });

describe('POST /api/basic-auth/register', () => {
  it('open mode: creates an account that can sign in', async () => {
    const email = uniqueEmail();
    const res = await register(body(email, { displayName: 'Ada' }), { OR3_BASIC_AUTH_REGISTRATION: 'open' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    const session = await signInBearer(email);
    expect(session.res.status).toBe(200);
  });

  it('answers an existing email exactly like a new one, and changes nothing', async () => {
    const email = uniqueEmail();
    await register(body(email), { OR3_BASIC_AUTH_REGISTRATION: 'open' });
    const again = await register(body(email, { password: 'another password!', confirmPassword: 'another password!' }), { OR3_BASIC_AUTH_REGISTRATION: 'open' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ ok: true });
    expect((await signInBearer(email)).res.status).toBe(200);
    expect((await signInBearer(email, 'another password!')).res.status).toBe(401);
  });

  it('closed mode refuses with 403', async () => {
    const res = await register(body(uniqueEmail()), { OR3_BASIC_AUTH_REGISTRATION: 'closed' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'registration_closed' });
  });

  it('invite mode needs a valid invite, joins its workspace with its role, and the invite is single-use', async () => {
    const owner = await signedInUser();
    const { id: workspaceId } = await (await call('POST', '/api/workspaces', owner.headers, { name: 'Team' })).json<{ id: string }>();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${workspaceId}/invites`, owner.headers, { role: 'editor' })
    ).json<{ inviteToken: string }>();
    const invite = { OR3_BASIC_AUTH_REGISTRATION: 'invite' };

    expect((await register(body(uniqueEmail()), invite)).status).toBe(403);
    expect((await register(body(uniqueEmail(), { inviteToken: 'not-a-real-invite' }), invite)).status).toBe(403);

    const email = uniqueEmail('invited');
    expect((await register(body(email, { inviteToken }), invite)).status).toBe(200);
    const member = await signInBearer(email);
    const session = await (await call('GET', '/api/auth/session', member.headers)).json<any>();
    expect(session.session.workspace).toEqual({ id: workspaceId, name: 'Team' });
    expect(session.session.role).toBe('editor');

    expect((await register(body(uniqueEmail(), { inviteToken }), invite)).status).toBe(403);
  });

  it('an expired invite is refused', async () => {
    const owner = await signedInUser();
    const { id: workspaceId } = await (await call('POST', '/api/workspaces', owner.headers, { name: 'Old' })).json<{ id: string }>();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${workspaceId}/invites`, owner.headers, { role: 'viewer', expiresInSeconds: 60 })
    ).json<{ inviteToken: string }>();
    await env.DB.prepare('UPDATE invites SET expires_at = ? WHERE workspace_id = ?')
      .bind(Date.now() - 1, workspaceId)
      .run();
    expect((await register(body(uniqueEmail(), { inviteToken }), { OR3_BASIC_AUTH_REGISTRATION: 'invite' })).status).toBe(403);
  });

  it.each([
    [{ password: 'short', confirmPassword: 'short' }, 400, 'weak_password'],
    [{ password: 'x'.repeat(257), confirmPassword: 'x'.repeat(257) }, 400, 'weak_password'],
    [{ confirmPassword: 'something else entirely' }, 400, 'password_mismatch'],
    [{ email: 'not-an-email' }, 400, 'invalid_body'],
    [{ role: 'owner' }, 400, 'invalid_body'],
  ])('rejects bad input %j', async (extra, status, code) => {
    const res = await register(body(uniqueEmail(), extra));
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: code });
  });

  it('refuses a 1 MB body with 413 before hashing', async () => {
    const res = await api('/api/basic-auth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body(uniqueEmail(), { password: 'x'.repeat(1024 * 1024) })),
    });
    expect(res.status).toBe(413);
  });
});

describe('POST /api/basic-auth/change-password', () => {
  const change = (headers: Record<string, string>, payload: unknown) => call('POST', '/api/basic-auth/change-password', headers, payload);

  it('requires the current password and a valid new one', async () => {
    const user = await signedInUser();
    expect(
      (await change(user.headers, { currentPassword: 'wrong password!!', newPassword: 'new password 123', confirmNewPassword: 'new password 123' })).status,
    ).toBe(400);
    expect((await change(user.headers, { currentPassword: PASSWORD, newPassword: 'short', confirmNewPassword: 'short' })).status).toBe(400);
    expect((await change({}, { currentPassword: PASSWORD, newPassword: 'new password 123', confirmNewPassword: 'new password 123' })).status).toBe(401);
  });

  it("two concurrent changes: one wins, the other is told to sign in again, and the winner's token works", async () => {
    const user = await signedInUser();
    const headers = { ...user.headers, 'x-or3-token-transport': 'bearer' };
    const [a, b] = await Promise.all([
      change(headers, { currentPassword: PASSWORD, newPassword: 'first new password', confirmNewPassword: 'first new password' }),
      change(headers, { currentPassword: PASSWORD, newPassword: 'second new password', confirmNewPassword: 'second new password' }),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses[0]).toBe(200);
    // 401: its token's version went stale; 409: it lost after authenticating; 400: it checked the new hash.
    expect([400, 401, 409]).toContain(statuses[1]);
    const winner = a.status === 200 ? a : b;
    const { accessToken } = await winner.json<{ accessToken: string }>();
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${accessToken}` })).status).toBe(200);
  });

  it('revokes every other session, keeps this one, and the old password stops working', async () => {
    const user = await signedInUser();
    const otherDevice = await signInBearer(user.email);
    const res = await change(user.headers, { currentPassword: PASSWORD, newPassword: 'new password 123', confirmNewPassword: 'new password 123' });
    expect(res.status).toBe(200);
    expect((await call('POST', '/api/basic-auth/refresh', { 'x-or3-token-transport': 'bearer' }, { refreshToken: otherDevice.refreshToken })).status).toBe(401);
    // This session's refresh token still works and yields a token with the new version.
    const refreshed = await call('POST', '/api/basic-auth/refresh', { 'x-or3-token-transport': 'bearer' }, { refreshToken: user.refreshToken });
    expect(refreshed.status).toBe(200);
    const { accessToken } = await refreshed.json<{ accessToken: string }>();
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${accessToken}` })).status).toBe(200);
    expect((await signInBearer(user.email)).res.status).toBe(401);
    expect((await signInBearer(user.email, 'new password 123')).res.status).toBe(200);
  });
});

describe('invite races', () => {
  it('one invite creates at most one account, even under concurrent registrations', async () => {
    const owner = await signedInUser();
    const { id: workspaceId } = await (await call('POST', '/api/workspaces', owner.headers, { name: 'Race' })).json<{ id: string }>();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${workspaceId}/invites`, owner.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    const emails = Array.from({ length: 5 }, () => uniqueEmail('racer'));
    const results = await Promise.all(emails.map((email) => register(body(email, { inviteToken }), { OR3_BASIC_AUTH_REGISTRATION: 'invite' })));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    const placeholders = emails.map(() => '?').join(',');
    const { n } = (await env.DB.prepare(`SELECT count(*) AS n FROM users WHERE email IN (${placeholders})`)
      .bind(...emails)
      .first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('an invite to a deleted workspace creates no account', async () => {
    const owner = await signedInUser();
    const { id: workspaceId } = await (await call('POST', '/api/workspaces', owner.headers, { name: 'Gone' })).json<{ id: string }>();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${workspaceId}/invites`, owner.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    await call('DELETE', `/api/workspaces/${workspaceId}`, owner.headers);
    const email = uniqueEmail('late');
    expect((await register(body(email, { inviteToken }), { OR3_BASIC_AUTH_REGISTRATION: 'invite' })).status).toBe(403);
    expect(await env.DB.prepare('SELECT 1 AS x FROM users WHERE email = ?').bind(email).first()).toBeNull();
  });

  it('an existing email does not burn the invite', async () => {
    const owner = await signedInUser();
    const { id: workspaceId } = await (await call('POST', '/api/workspaces', owner.headers, { name: 'Kept' })).json<{ id: string }>();
    const { inviteToken } = await (
      await call('POST', `/api/workspaces/${workspaceId}/invites`, owner.headers, { role: 'viewer' })
    ).json<{ inviteToken: string }>();
    const res = await register(body(owner.email, { inviteToken }), { OR3_BASIC_AUTH_REGISTRATION: 'invite' });
    expect(res.status).toBe(200);
    expect((await register(body(uniqueEmail(), { inviteToken }), { OR3_BASIC_AUTH_REGISTRATION: 'invite' })).status).toBe(200);
  });
});
