/**
 * The central-load scenario (docs/performance.md "Central load"): a second local server whose
 * every D1 query waits OR3_DEV_D1_DELAY_MS, and which requests pay it. Run by bench/run.mjs
 * (`npm run bench -- --scenario central`), which passes its helpers in.
 */
import { readD1Migrations } from '@cloudflare/vitest-plugin';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createTestHarness } from 'wrangler';

export async function centralScenario({ root, quick, devVars, row, now, pct, median, round, op }) {
  const DEV_VARS = devVars;
  // Central load and the latency it costs a user far from the D1 region (docs/performance.md
  // "Central load"): a second local server whose every D1 query waits OR3_DEV_D1_DELAY_MS.
  // After one warm-up request, a push or pull should not pay it at all.
  const DELAY = 100;
  const rounds = quick ? 40 : 200;
  // A federated identity provider with inline keys: a federated token's app start is measured too.
  const ISSUER = 'https://bench-idp.example.com';
  const idp = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(idp.publicKey)), kid: 'k1', alg: 'RS256' };
  const OIDC = JSON.stringify([{ id: 'idp', issuer: ISSUER, audience: 'or3', jwks: { keys: [jwk] } }]);
  const far = createTestHarness({
    root,
    workers: [{ configPath: './wrangler.toml', vars: { ...DEV_VARS, OR3_DEV_D1_DELAY_MS: String(DELAY), OR3_AUTH_OIDC_PROVIDERS: OIDC } }],
  });
  const { url: farUrl } = await far.listen();
  try {
    const worker = far.getWorker();
    const farEnv = await worker.getEnv();
    for (const migration of await readD1Migrations(`${root}/migrations/d1`)) await farEnv.DB.batch(migration.queries.map((q) => farEnv.DB.prepare(q)));
    const send = async (path, token, body) => {
      const res = await worker.fetch(new URL(path, farUrl), {
        method: body === undefined ? 'GET' : 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': '10.78.0.1', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return res.json();
    };
    const email = `far-${crypto.randomUUID().slice(0, 8)}@example.com`;
    const password = 'correct horse battery staple';
    await send('/api/basic-auth/register', null, { email, password, confirmPassword: password });
    // Which requests waited on D1, exactly: the server counts the queries it delayed
    // (src/dev/d1-delay.ts, GET /api/dev/d1-queries), read before and after each request
    // (requests here are sequential), rather than guessed from times on a loaded machine.
    const delayedSoFar = async () => (await send('/api/dev/d1-queries')).delayed;
    // Sign-in reads D1 once (the user by email); its backoff counter lives in an object.
    const signInOnce = async (n) => {
      const before = await delayedSoFar();
      const res = await worker.fetch(new URL('/api/basic-auth/sign-in', farUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': `10.79.${n >> 8}.${n & 255}` },
        body: JSON.stringify({ email, password }),
      });
      if (!res.ok) throw new Error(`sign-in: ${res.status} ${await res.text()}`);
      return { tokens: await res.json(), queries: (await delayedSoFar()) - before };
    };
    // The first sign-in also makes the user's object, which reads the user's facts from D1 once.
    const first = await signInOnce(250);
    row('central: D1 queries of a first sign-in (the user object made)', first.queries, 'queries', null, null, null, 'reported', true);
    const { accessToken, refreshToken } = first.tokens;
    const { session } = await send('/api/auth/session', accessToken);
    const scope = { workspaceId: session.workspace.id };
    await send('/api/sync/pull', accessToken, { scope, cursor: 0 }); // warm-up: the object fills its cache once
    // Refresh rotates in the user's object (docs/architecture.md "Sessions live with their user"): no D1.
    let refresh = refreshToken;
    const rotate = async () => {
      const res = await worker.fetch(new URL('/api/basic-auth/refresh', farUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': '10.78.0.3' },
        body: JSON.stringify({ refreshToken: refresh }),
      });
      if (!res.ok) throw new Error(`refresh: ${res.status} ${await res.text()}`);
      refresh = (await res.json()).refreshToken;
    };
    // A cold app start with a stored token: the session and "my workspaces", both answered by
    // the user's object (docs/architecture.md "Members live with their workspace"): no D1.
    // A federated token (OIDC): its identity's object knows the user after the first request
    // (docs/architecture.md "Capacity model"), so its app start pays no D1 either.
    const fedToken = await new SignJWT({ email: 'fed@example.com', email_verified: true })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience('or3')
      .setSubject(`bench-${crypto.randomUUID()}`)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(idp.privateKey);
    await send('/api/auth/session', fedToken); // first sight: D1 provisions the user once
    const times = {
      push: [],
      pull: [],
      refresh: [],
      'app start: session': [],
      'app start: my workspaces': [],
      'federated app start: session': [],
      'federated app start: my workspaces': [],
    };
    const signIns = [];
    const signInQueries = [];
    const paid = Object.fromEntries(Object.keys(times).map((route) => [route, 0]));
    const timed = async (route, request) => {
      const before = await delayedSoFar();
      const t = now();
      await request();
      times[route].push(now() - t);
      if ((await delayedSoFar()) > before) paid[route]++;
    };
    for (let i = 0; i < rounds; i++) {
      await timed('push', () => send('/api/sync/push', accessToken, { scope, ops: [op()] }));
      await timed('pull', () => send('/api/sync/pull', accessToken, { scope, cursor: 0, limit: 1 }));
      await timed('app start: session', () => send('/api/auth/session', accessToken));
      await timed('app start: my workspaces', () => send('/api/workspaces', accessToken));
      await timed('federated app start: session', () => send('/api/auth/session', fedToken));
      await timed('federated app start: my workspaces', () => send('/api/workspaces', fedToken));
      if (i < 8) {
        const t = now();
        signInQueries.push((await signInOnce(i)).queries);
        signIns.push(now() - t);
        // 10 rotations a minute per session is the limit: refresh on the first rounds only, spaced.
        await timed('refresh', rotate);
      }
    }
    for (const route of Object.keys(times)) {
      row(`central: ${route} p50 with D1 +${DELAY} ms`, median(times[route]), 'ms', null, null, null, 'reported', true, {
        p99: round(pct(times[route], 99), 1),
      });
      row(
        `central: ${route} requests that waited on D1, per 1,000`,
        (paid[route] / times[route].length) * 1000,
        'requests',
        null,
        null,
        null,
        '0',
        paid[route] === 0,
      );
    }
    const mostQueries = Math.max(...signInQueries);
    row('central: D1 queries of a sign-in, the most of 8 (the user by email)', mostQueries, 'queries', null, null, null, '≤ 1', mostQueries <= 1);
    // One D1 read per sign-in (the user by email; its backoff counter lives in an object): the
    // delay once, plus the password check. It was three (the counter's write and clear) before.
    row(`central: sign-in p50 with D1 +${DELAY} ms (includes the password check)`, median(signIns), 'ms', null, null, null, 'reported', true, {
      min: round(Math.min(...signIns), 1),
    });
  } finally {
    await far.close();
  }
}
