/** SECURITY.md §7 "Refresh tokens": rotation, grace, reuse detection, concurrency, storage. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { api, apiWithEnv } from '../helpers';
import { call, cookiesOf, makeUser, signInCookies, signedInUser, userCount, userRows } from './helpers';

const bearer = { 'x-or3-token-transport': 'bearer' };
const refresh = (refreshToken: string, query = '') =>
  api(`/api/basic-auth/refresh${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer },
    body: JSON.stringify({ refreshToken }),
  });

describe('POST /api/basic-auth/refresh', () => {
  it('rotates: a new access and refresh token, and the new access token works', async () => {
    const user = await signedInUser();
    const res = await refresh(user.refreshToken);
    expect(res.status).toBe(200);
    const body = await res.json<{ ok: boolean; accessToken: string; refreshToken: string; expiresAt: string }>();
    expect(body.ok).toBe(true);
    expect(body.refreshToken).not.toBe(user.refreshToken);
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${body.accessToken}` })).status).toBe(200);
    // The child rotates in turn.
    expect((await refresh(body.refreshToken)).status).toBe(200);
  });

  it('gives the same child to a retry of the parent inside the grace window', async () => {
    const user = await signedInUser();
    const first = await (await refresh(user.refreshToken)).json<{ refreshToken: string }>();
    const retry = await refresh(user.refreshToken);
    expect(retry.status).toBe(200);
    expect((await retry.json<{ refreshToken: string }>()).refreshToken).toBe(first.refreshToken);
  });

  it('two concurrent refreshes of one token yield exactly one child', async () => {
    const user = await signedInUser();
    const results = await Promise.all([refresh(user.refreshToken), refresh(user.refreshToken)]);
    const tokens = await Promise.all(results.map(async (r) => (r.status === 200 ? (await r.json<{ refreshToken: string }>()).refreshToken : null)));
    expect(tokens[0]).toBe(tokens[1]);
    expect(await userCount(user.id, 'SELECT count(*) AS n FROM refresh_tokens WHERE parent_id IS NOT NULL')).toBe(1);
  });

  it('reuse after the grace window revokes the whole session family', async () => {
    const user = await signedInUser();
    const noGrace = { OR3_BASIC_AUTH_ROTATION_GRACE_MS: '0' };
    const rotate = (token: string) =>
      apiWithEnv(noGrace, '/api/basic-auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer },
        body: JSON.stringify({ refreshToken: token }),
      });
    const child = await (await rotate(user.refreshToken)).json<{ refreshToken: string; accessToken: string }>();
    await new Promise((r) => setTimeout(r, 5));
    const replay = await rotate(user.refreshToken);
    expect(replay.status).toBe(401);
    // The legitimate child and its access token die with the family.
    expect((await rotate(child.refreshToken)).status).toBe(401);
    expect((await call('GET', '/api/workspaces', { authorization: `Bearer ${child.accessToken}` })).status).toBe(401);
    expect((await call('GET', '/api/workspaces', user.headers)).status).toBe(401);
  });

  it('a grandparent is reuse even inside the grace window', async () => {
    const user = await signedInUser();
    const child = await (await refresh(user.refreshToken)).json<{ refreshToken: string }>();
    expect((await refresh(child.refreshToken)).status).toBe(200);
    expect((await refresh(user.refreshToken)).status).toBe(401);
  });

  it('refuses after sign-out, after expiry, and garbled tokens', async () => {
    const user = await signedInUser();
    await call('POST', '/api/basic-auth/sign-out', user.headers);
    expect((await refresh(user.refreshToken)).status).toBe(401);

    const other = await signedInUser();
    await userRows(other.id, 'UPDATE refresh_tokens SET expires_at = ?', Date.now() - 1);
    expect((await refresh(other.refreshToken)).status).toBe(401);

    const [id, secret, owner] = (await signedInUser()).refreshToken.split('.') as [string, string, string];
    const tampered = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    for (const garbled of [
      `${id}.${tampered}.${owner}`,
      // The right token id and secret sent to another user's object, or to one that never existed.
      `${id}.${secret}.${other.id}`,
      `${id}.${secret}.${crypto.randomUUID()}`,
      '',
      'x',
      `${id}.`,
      `${id}.${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`,
      `${crypto.randomUUID()}.${secret}`,
      `${id}.${secret}.extra`,
    ]) {
      expect((await refresh(garbled)).status, garbled).toBe(401);
    }
  });

  it('stores no plaintext refresh secret', async () => {
    const user = await signedInUser();
    const secret = user.refreshToken.split('.')[1]!;
    const results = await userRows(user.id, 'SELECT * FROM refresh_tokens');
    expect(JSON.stringify(results)).not.toContain(secret);
    expect(results[0]).toMatchObject({ secret_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('silent mode answers { ok: false } with 200 instead of 401', async () => {
    const res = await refresh('garbage', '?silent=1');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: false });
  });

  it('rotates by cookie for browsers and sets new cookies', async () => {
    const { email } = await makeUser();
    const { refresh: refreshCookie } = await signInCookies(email);
    const res = await api('/api/basic-auth/refresh', { method: 'POST', headers: { cookie: `or3_refresh=${refreshCookie}`, origin: 'https://or3.test' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    const cookies = cookiesOf(res);
    expect(cookies.or3_refresh?.value).not.toBe(refreshCookie);
    expect(cookies.or3_access?.value.split('.')).toHaveLength(3);
  });

  it('rate-limits a burst of rotations per session (family): 10 a minute', async () => {
    const user = await signedInUser();
    let token = user.refreshToken;
    const statuses: number[] = [];
    for (let i = 0; i < 21 && !statuses.includes(429); i++) {
      const res = await refresh(token);
      statuses.push(res.status);
      if (res.status === 200) token = (await res.json<{ refreshToken: string }>()).refreshToken;
    }
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(200));
    expect(statuses).toContain(429);
  });
});

describe('POST /api/basic-auth/sign-out', () => {
  it('revokes the session by refresh cookie and clears both cookies', async () => {
    const user = await signedInUser();
    const res = await api('/api/basic-auth/sign-out', { method: 'POST', headers: { cookie: `or3_refresh=${user.refreshToken}`, origin: 'https://or3.test' } });
    expect(res.status).toBe(200);
    const cookies = cookiesOf(res);
    expect(cookies.or3_access?.attrs['max-age']).toBe('0');
    expect(cookies.or3_refresh?.attrs).toMatchObject({ 'max-age': '0', path: '/api' });
    expect((await call('GET', '/api/workspaces', user.headers)).status).toBe(401);
  });

  it('is idempotent without a session', async () => {
    expect((await api('/api/basic-auth/sign-out', { method: 'POST' })).status).toBe(200);
  });
});

describe('refresh across a JWT secret rotation', () => {
  it('a retry inside the grace window still gets the same child after the secret rotated', async () => {
    const user = await signedInUser();
    const first = await (await refresh(user.refreshToken)).json<{ refreshToken: string }>();
    const rotated = {
      OR3_BASIC_AUTH_JWT_SECRET: 'rotated-secret-0123456789abcdef0123456789abcdef',
      OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS: env.OR3_BASIC_AUTH_JWT_SECRET,
    };
    const retry = await apiWithEnv(rotated, '/api/basic-auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer },
      body: JSON.stringify({ refreshToken: user.refreshToken }),
    });
    expect(retry.status).toBe(200);
    expect((await retry.json<{ refreshToken: string }>()).refreshToken).toBe(first.refreshToken);
  });
});
