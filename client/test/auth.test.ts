/** Auth client against the real Worker: bearer sign-in, single-flight refresh, 401 recovery, sign-out, external tokens. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExternalTokenAuth, memoryTokenStore, Or3Error } from '../src/index';
import { basicAuthOf, device, PASSWORD, startServer, uniqueEmail, type TestServer } from './harness';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

const count = (calls: string[], call: string) => calls.filter((c) => c === call).length;

describe('basic auth client', () => {
  it('registers, signs in with bearer tokens and reads the session', async () => {
    const d = device(server);
    const email = uniqueEmail();
    await d.client.basicAuth.register({ email, password: PASSWORD, displayName: 'Ada' });
    const session = await d.client.session();
    expect(session).toMatchObject({ authenticated: true, user: { email, displayName: 'Ada' }, role: 'owner', workspace: { id: expect.any(String) } });
    expect(d.calls).toContain('POST /api/basic-auth/sign-in');
  });

  it('refreshes once for ten concurrent calls that find the token about to expire', async () => {
    const d = device(server);
    await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    await d.client.session(); // provisions the default workspace
    await basicAuthOf(d.client).expireAccessToken();
    const results = await Promise.all(Array.from({ length: 10 }, () => d.client.workspaces.list()));
    expect(results.every((r) => r.length === 1)).toBe(true);
    expect(count(d.calls, 'POST /api/basic-auth/refresh')).toBe(1);
  });

  it('after a 401, refreshes once and retries each request once', async () => {
    const email = uniqueEmail();
    const store = memoryTokenStore();
    const first = device(server, { tokenStore: store });
    await first.client.basicAuth.register({ email, password: PASSWORD });
    const real = (await store.load())!;
    // A token the server refuses (wrong signature) that the client believes is fresh.
    await store.save({ ...real, accessToken: real.accessToken.slice(0, -4) + 'AAAA' });
    const d = device(server, { tokenStore: store });
    const results = await Promise.all(Array.from({ length: 10 }, () => d.client.workspaces.list()));
    expect(results).toHaveLength(10);
    expect(count(d.calls, 'POST /api/basic-auth/refresh')).toBe(1);
    expect(count(d.calls, 'GET /api/workspaces')).toBe(20); // each request: the 401, then its one retry
  });

  it('signs out: the refresh token stops working and requests fail with 401', async () => {
    const store = memoryTokenStore();
    const d = device(server, { tokenStore: store });
    await d.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    const tokens = (await store.load())!;
    await d.client.basicAuth.signOut();
    expect(await store.load()).toBeNull();
    const err = await d.client.workspaces.list().catch((e) => e);
    expect(err).toBeInstanceOf(Or3Error);
    expect(err.status).toBe(401);
    // The old refresh token was revoked server-side, not just forgotten.
    const res = await fetch(new URL('/api/basic-auth/refresh', server.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': '10.99.0.1' },
      body: JSON.stringify({ refreshToken: tokens.refreshToken }),
    });
    expect(res.status).toBe(401);
  });

  it('wrong credentials are a permanent 401 with the server message', async () => {
    const d = device(server);
    const err = await d.client.basicAuth.signIn(uniqueEmail(), 'not the password at all').catch((e) => e);
    expect(err).toMatchObject({ status: 401, transient: false });
  });
});

describe('external token adapter', () => {
  it('sends the app’s token and asks for a fresh one once after a 401', async () => {
    // Stand-in identity provider: its "tokens" are basic-auth access tokens, which the server verifies.
    const store = memoryTokenStore();
    const signer = device(server, { tokenStore: store });
    await signer.client.basicAuth.register({ email: uniqueEmail(), password: PASSWORD });
    await signer.client.session();
    const asked: boolean[] = [];
    let stale = true;
    const adapter = new ExternalTokenAuth(async ({ forceRefresh }) => {
      asked.push(forceRefresh);
      if (forceRefresh) stale = false;
      const t = (await store.load())!;
      return stale ? 'not-a-valid-token' : t.accessToken;
    });
    const d = device(server, { auth: adapter });
    const list = await d.client.workspaces.list();
    expect(list).toHaveLength(1);
    expect(asked).toEqual([false, true, false]);
    expect(d.calls).toEqual(['GET /api/workspaces', 'GET /api/workspaces']);
  });
});
