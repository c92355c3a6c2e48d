import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { api } from '../helpers';
import { call, makeUser, signInCookies, signedInUser } from './helpers';

describe('GET /api/auth/session', () => {
  it('answers { session: null } without credentials', async () => {
    const res = await api('/api/auth/session');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ session: null, appAccessAllowed: false, workspaceItemCapability: 'v1' });
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('provisions "My Workspace" with the user as owner on first sight, and resolves the OR3 SessionContext', async () => {
    const user = await signedInUser({ displayName: 'Grace' });
    const res = await call('GET', '/api/auth/session', user.headers);
    const { session } = await res.json<any>();
    expect(session).toMatchObject({
      authenticated: true,
      provider: 'basic-auth',
      providerUserId: user.id,
      user: { id: user.id, email: user.email, displayName: 'Grace' },
      workspace: { name: 'My Workspace' },
      role: 'owner',
      deploymentAdmin: false,
    });
    expect(Date.parse(session.expiresAt)).toBeGreaterThan(Date.now());
    // Resolving again does not provision again.
    const again = await (await call('GET', '/api/auth/session', user.headers)).json<any>();
    expect(again.session.workspace.id).toBe(session.workspace.id);
    const list = await (await call('GET', '/api/workspaces', user.headers)).json<any>();
    expect(list.workspaces).toHaveLength(1);
    expect(list.workspaces[0]).toMatchObject({ id: session.workspace.id, role: 'owner', isActive: true });
  });

  it('10 concurrent first requests create exactly one default workspace', async () => {
    const user = await signedInUser();
    const sessions = await Promise.all(Array.from({ length: 10 }, () => call('GET', '/api/auth/session', user.headers).then((r) => r.json<any>())));
    const ids = new Set(sessions.map((s) => s.session.workspace.id));
    expect(ids.size).toBe(1);
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM members WHERE user_id = ?').bind(user.id).first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('works with the cookie transport too', async () => {
    const { email } = await makeUser();
    const { access } = await signInCookies(email);
    const { session } = await (await api('/api/auth/session', { headers: { cookie: `or3_access=${access}` } })).json<any>();
    expect(session.user.email).toBe(email);
  });

  it('moves the active workspace to a live one when the active one is deleted', async () => {
    const user = await signedInUser();
    const first = (await (await call('GET', '/api/auth/session', user.headers)).json<any>()).session.workspace.id;
    const { id: second } = await (await call('POST', '/api/workspaces', user.headers, { name: 'Second' })).json<{ id: string }>();
    expect((await call('DELETE', `/api/workspaces/${first}`, user.headers)).status).toBe(200);
    const { session } = await (await call('GET', '/api/auth/session', user.headers)).json<any>();
    expect(session.workspace.id).toBe(second);
  });
});
