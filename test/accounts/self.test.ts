/** A user's own account actions: change-email (re-authenticated) and DELETE /api/auth/account. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { createOwnedWorkspace, upsertMember } from '../../src/workspace-records/member-writes';
import { call, PASSWORD, signedInUser, signInBearer, uniqueEmail, userCount } from '../auth/helpers';
import { syncUser } from '../sync/helpers';

const count = async (sql: string, ...args: unknown[]) =>
  (await env.DB.prepare(sql)
    .bind(...args)
    .first<{ n: number }>())!.n;

describe('POST /api/auth/change-email', () => {
  it('changes the email after re-authentication; the new address signs in, the old does not', async () => {
    const u = await signedInUser();
    const fresh = uniqueEmail('moved').toUpperCase();
    expect((await call('POST', '/api/auth/change-email', u.headers, { newEmail: fresh, currentPassword: PASSWORD })).status).toBe(200);
    expect((await signInBearer(fresh.toLowerCase())).res.status).toBe(200);
    expect((await signInBearer(u.email)).res.status).toBe(401);
  });

  it('refuses a wrong password (400), a taken address (409), bad bodies (400) and strangers (401), changing nothing', async () => {
    const u = await signedInUser();
    const other = await signedInUser();
    const wrong = await call('POST', '/api/auth/change-email', u.headers, { newEmail: uniqueEmail(), currentPassword: 'not the password' });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: 'invalid_current_password' });
    const taken = await call('POST', '/api/auth/change-email', u.headers, { newEmail: other.email, currentPassword: PASSWORD });
    expect(taken.status).toBe(409);
    for (const body of [{}, { newEmail: 'not-an-email', currentPassword: PASSWORD }, { newEmail: uniqueEmail(), currentPassword: PASSWORD, extra: 1 }]) {
      expect((await call('POST', '/api/auth/change-email', u.headers, body)).status).toBe(400);
    }
    expect((await call('POST', '/api/auth/change-email', {}, { newEmail: uniqueEmail(), currentPassword: PASSWORD })).status).toBe(401);
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ? AND email = ?', u.id, u.email)).toBe(1);
  });
});

describe('DELETE /api/auth/account', () => {
  it('requires a disposition while the user alone owns a workspace (400, nothing changes)', async () => {
    const u = await syncUser();
    for (const body of [undefined, {}, { delete: false }]) {
      const res = await call('DELETE', '/api/auth/account', u.headers, body);
      expect(res.status).toBe(400);
    }
    expect(await count('SELECT count(*) AS n FROM members WHERE user_id = ?', u.id)).toBe(1);
    expect((await call('GET', '/api/workspaces', u.headers)).status).toBe(200);
  });

  it('deletes the account, transferring what they alone own; every session ends', async () => {
    const u = await syncUser();
    const heir = await signedInUser();
    const other = await signInBearer(u.email);
    const shared = await createOwnedWorkspace(env, heir.id, 'Kept', null);
    await upsertMember(env, shared, u.id, 'editor');
    const res = await call('DELETE', '/api/auth/account', u.headers, { transferTo: heir.id });
    expect(res.status).toBe(200);
    expect((await call('GET', '/api/workspaces', other.headers)).status).toBe(401);
    expect(await count('SELECT count(*) AS n FROM members WHERE user_id = ?', u.id)).toBe(0);
    expect(await userCount(u.id, 'SELECT count(*) AS n FROM sessions')).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM members WHERE user_id = ? AND workspace_id = ? AND role = 'owner'`, heir.id, u.workspaceId)).toBe(1);
    expect(await count('SELECT count(*) AS n FROM members WHERE workspace_id = ?', shared)).toBe(1);
  });

  it('a user who alone owns nothing may delete without a body', async () => {
    const u = await signedInUser(); // no workspace provisioned yet
    expect((await call('DELETE', '/api/auth/account', u.headers)).status).toBe(200);
    expect(await count('SELECT count(*) AS n FROM users WHERE id = ?', u.id)).toBe(0);
  });
});
