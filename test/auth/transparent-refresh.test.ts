/**
 * API.md "Transparent refresh": a cookie request whose access cookie is missing or expired but
 * whose refresh cookie is valid is served as that user, with rotated cookies on the response.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { signAccessToken, signingKeys } from '../../src/auth/tokens';
import { api, apiWithEnv } from '../helpers';
import { cookiesOf, makeUser, signInCookies, userCount } from './helpers';

const TEST_JWT_SECRET = (env as unknown as { OR3_BASIC_AUTH_JWT_SECRET: string }).OR3_BASIC_AUTH_JWT_SECRET;

async function cookieUser() {
  const user = await makeUser();
  const { access, refresh } = await signInCookies(user.email);
  const session = await (await api('/api/auth/session', { headers: { cookie: `or3_access=${access}` } })).json<any>();
  return { ...user, access, refresh, workspaceId: session.session.workspace.id as string };
}

const pullWith = (cookie: string, workspaceId: string, extraHeaders: Record<string, string> = {}) =>
  api('/api/sync/pull', {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie, ...extraHeaders },
    body: JSON.stringify({ scope: { workspaceId }, cursor: 0 }),
  });

const childrenOf = async (userId: string) => userCount(userId, 'SELECT count(*) AS n FROM refresh_tokens WHERE parent_id IS NOT NULL');

describe('transparent refresh from the or3_refresh cookie', () => {
  it('serves a pull with no access cookie as the user and sets both rotated cookies', async () => {
    const user = await cookieUser();
    const res = await pullWith(`or3_refresh=${user.refresh}`, user.workspaceId);
    expect(res.status).toBe(200);
    const cookies = cookiesOf(res);
    expect(cookies.or3_access?.value.split('.')).toHaveLength(3);
    expect(cookies.or3_refresh?.value).toBeTruthy();
    expect(cookies.or3_refresh?.value).not.toBe(user.refresh);
    expect(cookies.or3_refresh?.attrs).toMatchObject({ path: '/api', httponly: true });
    // The new access cookie works on its own.
    const next = await pullWith(`or3_access=${cookies.or3_access!.value}`, user.workspaceId);
    expect(next.status).toBe(200);
    expect(next.headers.getSetCookie()).toEqual([]);
  });

  it('20 concurrent requests with one refresh cookie all succeed: the grace-window children are not rate-limited (SECURITY.md §7 case 46)', async () => {
    const user = await cookieUser();
    const results = await Promise.all(Array.from({ length: 20 }, () => pullWith(`or3_refresh=${user.refresh}`, user.workspaceId)));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    // One rotation: every answer carries the same child.
    expect(new Set(results.map((r) => cookiesOf(r).or3_refresh?.value)).size).toBe(1);
    expect(await childrenOf(user.id)).toBe(1);
  });

  it('serves an expired access cookie the same way', async () => {
    const user = await cookieUser();
    const claims = JSON.parse(atob(user.access.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')));
    const { token: expired } = await signAccessToken(
      await signingKeys(TEST_JWT_SECRET),
      { sub: claims.sub, sid: claims.sid, ver: claims.ver },
      60,
      Date.now() - 3600_000,
    );
    expect((await pullWith(`or3_access=${expired}`, user.workspaceId)).status).toBe(401);
    const res = await pullWith(`or3_access=${expired}; or3_refresh=${user.refresh}`, user.workspaceId);
    expect(res.status).toBe(200);
    expect(cookiesOf(res).or3_access?.value).not.toBe(expired);
  });

  it('GET /api/auth/session answers the session, not null, and sets new cookies', async () => {
    const user = await cookieUser();
    const res = await api('/api/auth/session', { headers: { cookie: `or3_refresh=${user.refresh}` } });
    const body = await res.json<any>();
    expect(body.session?.authenticated).toBe(true);
    expect(body.session.user.id).toBe(user.id);
    expect(Date.parse(body.session.expiresAt)).toBeGreaterThan(Date.now());
    expect(Object.keys(cookiesOf(res)).sort()).toEqual(['or3_access', 'or3_refresh']);
  });

  it('five concurrent requests with the same refresh cookie all succeed, with one child token', async () => {
    const user = await cookieUser();
    const answers = await Promise.all(Array.from({ length: 5 }, () => pullWith(`or3_refresh=${user.refresh}`, user.workspaceId)));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const children = new Set(answers.map((r) => cookiesOf(r).or3_refresh?.value));
    expect(children.size).toBe(1);
    expect(await childrenOf(user.id)).toBe(1);
  });

  it('a streamed answer (export) carries the rotated cookies too', async () => {
    const user = await cookieUser();
    const res = await api(`/api/workspaces/${user.workspaceId}/export`, { headers: { cookie: `or3_refresh=${user.refresh}` } });
    expect(res.status).toBe(200);
    await res.text();
    expect(Object.keys(cookiesOf(res)).sort()).toEqual(['or3_access', 'or3_refresh']);
  });

  it('a reused refresh token is no credentials: 401, and the session family is revoked as before', async () => {
    const user = await cookieUser();
    const noGrace = { OR3_BASIC_AUTH_ROTATION_GRACE_MS: '0' };
    const pullNoGrace = (cookie: string) =>
      apiWithEnv(noGrace, '/api/sync/pull', {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie },
        body: JSON.stringify({ scope: { workspaceId: user.workspaceId }, cursor: 0 }),
      });
    const first = await pullNoGrace(`or3_refresh=${user.refresh}`);
    expect(first.status).toBe(200);
    const child = cookiesOf(first);
    await new Promise((r) => setTimeout(r, 5));
    const replay = await pullNoGrace(`or3_refresh=${user.refresh}`);
    expect(replay.status).toBe(401);
    // The cookies are cleared, and the legitimate child and its access token died with the family.
    expect(cookiesOf(replay).or3_refresh?.value).toBe('');
    expect((await pullNoGrace(`or3_refresh=${child.or3_refresh!.value}`)).status).toBe(401);
    expect((await pullNoGrace(`or3_access=${child.or3_access!.value}`)).status).toBe(401);
  });

  it('a revoked or garbled refresh token is no credentials: 401 on pull, session null', async () => {
    const user = await cookieUser();
    const signOut = await api('/api/basic-auth/sign-out', { method: 'POST', headers: { cookie: `or3_access=${user.access}; or3_refresh=${user.refresh}` } });
    expect(signOut.status).toBe(200);
    expect((await pullWith(`or3_refresh=${user.refresh}`, user.workspaceId)).status).toBe(401);
    const session = await (await api('/api/auth/session', { headers: { cookie: `or3_refresh=${user.refresh}` } })).json<any>();
    expect(session.session).toBeNull();
    expect((await pullWith('or3_refresh=not-a-token', user.workspaceId)).status).toBe(401);
    expect(await childrenOf(user.id)).toBe(0);
  });

  it('a cross-site mutation carrying only the refresh cookie is refused before any rotation', async () => {
    const user = await cookieUser();
    const res = await pullWith(`or3_refresh=${user.refresh}`, user.workspaceId, { origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(await childrenOf(user.id)).toBe(0);
  });

  it('leaves bearer clients alone: an expired bearer token is 401 even with a refresh cookie', async () => {
    const user = await cookieUser();
    const res = await api('/api/sync/pull', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not.a.jwt', cookie: `or3_refresh=${user.refresh}` },
      body: JSON.stringify({ scope: { workspaceId: user.workspaceId }, cursor: 0 }),
    });
    expect(res.status).toBe(401);
    expect(await childrenOf(user.id)).toBe(0);
  });
});
