import { env } from 'cloudflare:workers';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { hashPassword, parseHash } from '../../src/auth/passwords';
import { createPasswordUser } from '../../src/auth/store';
import { api, apiWithEnv } from '../helpers';
import { PASSWORD, cookiesOf, makeUser, randomIp, signInBearer, uniqueEmail } from './helpers';

const signIn = (body: unknown, headers: Record<string, string> = {}) =>
  api('/api/basic-auth/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp(), ...headers },
    body: JSON.stringify(body),
  });

describe('POST /api/basic-auth/sign-in', () => {
  afterEach(() => vi.restoreAllMocks());

  it('audits success and failure without logging the password', async () => {
    const lines: string[] = [];
    for (const m of ['log', 'warn', 'error'] as const) vi.spyOn(console, m).mockImplementation((s) => void lines.push(String(s)));
    const { id, email } = await makeUser();
    await signIn({ email, password: 'a wrong password here' });
    await signIn({ email, password: PASSWORD });
    const audits = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'audit');
    expect(audits).toContainEqual(expect.objectContaining({ audit: 'auth.sign_in.failure', email, outcome: 'invalid_credentials' }));
    expect(audits).toContainEqual(expect.objectContaining({ audit: 'auth.sign_in.success', email, actorId: id }));
    expect(lines.join('\n')).not.toContain(PASSWORD);
    expect(lines.join('\n')).not.toContain('a wrong password here');
  });

  it('sets the OR3 cookies: HttpOnly, SameSite=Lax, Secure, with their paths and lifetimes', async () => {
    const { email } = await makeUser();
    const res = await signIn({ email, password: PASSWORD });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    const cookies = cookiesOf(res);
    expect(cookies.or3_access?.attrs).toMatchObject({ path: '/', 'max-age': '900', httponly: true, samesite: 'Lax', secure: true });
    expect(cookies.or3_refresh?.attrs).toMatchObject({ path: '/api', 'max-age': '2592000', httponly: true, samesite: 'Lax', secure: true });
    expect(cookies.or3_access?.value.split('.')).toHaveLength(3);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('omits Secure only for plain-http local development', async () => {
    const { email } = await makeUser();
    const dev = await apiWithEnv({ ENVIRONMENT: 'development' }, '/api/basic-auth/sign-in', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
      body: JSON.stringify({ email, password: PASSWORD }),
    });
    // helpers use an https base URL: still Secure
    expect(cookiesOf(dev).or3_access?.attrs.secure).toBe(true);
    const worker = (await import('../../src/index')).default;
    const plain = await worker.fetch(
      new Request('http://127.0.0.1:8787/api/basic-auth/sign-in', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
        body: JSON.stringify({ email, password: PASSWORD }),
      }),
      { ...env, ENVIRONMENT: 'development' } as never,
      { waitUntil() {}, passThroughOnException() {}, props: {} } as never,
    );
    expect(plain.status).toBe(200);
    expect(cookiesOf(plain).or3_access?.attrs.secure).toBeUndefined();
  });

  it('returns tokens in the body for bearer transport, and no cookies', async () => {
    const { email } = await makeUser();
    const { res, accessToken, refreshToken } = await signInBearer(email);
    expect(res.status).toBe(200);
    const body = await res.json<Record<string, string>>();
    expect(body.ok).toBe(true);
    expect(accessToken.split('.')).toHaveLength(3);
    expect(refreshToken).toMatch(/^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}\.[0-9a-f-]{36}$/);
    expect(Date.parse(body.expiresAt!) - Date.now()).toBeGreaterThan(800_000);
    expect(res.headers.getSetCookie()).toEqual([]);
  });

  it('answers unknown email, wrong password and disabled account identically', async () => {
    const { email } = await makeUser();
    const disabled = await makeUser();
    await env.DB.prepare('UPDATE users SET disabled_at = ? WHERE id = ?').bind(Date.now(), disabled.id).run();
    const answers = [];
    for (const body of [
      { email: uniqueEmail('nobody'), password: PASSWORD },
      { email, password: 'not the right password' },
      { email: disabled.email, password: PASSWORD },
    ]) {
      const res = await signIn(body);
      answers.push({ status: res.status, body: await res.text(), cookies: res.headers.getSetCookie() });
    }
    expect(answers[0]).toEqual({ status: 401, body: JSON.stringify({ error: 'invalid_credentials', message: 'Invalid credentials' }), cookies: [] });
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
  });

  it('answers every failed sign-in at the same fixed time, whatever the account holds (SECURITY.md §7 case 44)', async () => {
    // The mechanism, not a benchmark: each failure waits for the deadline (OR3_BASIC_AUTH_FAILED_SIGN_IN_MS
    // after arrival), so none can answer earlier. Measured medians are in docs/security.md.
    const vars = { OR3_BASIC_AUTH_FAILED_SIGN_IN_MS: '1000' };
    const native = await makeUser();
    const disabled = await makeUser();
    await env.DB.prepare('UPDATE users SET disabled_at = ? WHERE id = ?').bind(Date.now(), disabled.id).run();
    const bcrypt12 = uniqueEmail('or3');
    await createPasswordUser(env.DB, { email: bcrypt12, passwordHash: bcrypt.hashSync('old or3 password', 12) });
    // A cost above the accepted 12 (say, imported before the cap) is refused without hashing.
    const bcrypt14 = uniqueEmail('or3');
    await createPasswordUser(env.DB, { email: bcrypt14, passwordHash: `$2b$14$${'a'.repeat(53)}` });
    const cases = [
      { email: uniqueEmail('nobody'), password: 'wrong password here' },
      { email: native.email, password: 'wrong password here' },
      { email: disabled.email, password: PASSWORD },
      { email: bcrypt12, password: 'wrong password here' },
      { email: bcrypt14, password: 'wrong password here' },
    ];
    for (const body of cases) {
      const started = Date.now();
      const res = await apiWithEnv(vars, '/api/basic-auth/sign-in', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(401);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    }
    // A success does not wait.
    const ok = await apiWithEnv(vars, '/api/basic-auth/sign-in', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
      body: JSON.stringify({ email: bcrypt12, password: 'old or3 password' }),
    });
    expect(ok.status).toBe(200);
  }, 20_000);

  it('backs off per account after 5 failures, whatever the client address, with Retry-After', async () => {
    const { email } = await makeUser();
    for (let i = 0; i < 5; i++) expect((await signIn({ email, password: 'wrong password ' + i })).status).toBe(401);
    const blocked = await signIn({ email, password: PASSWORD }, { 'x-forwarded-for': '10.0.0.1' });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await blocked.json<{ message: string }>()).message).toMatch(/^Rate limit exceeded\. Retry after \d+s$/);
  });

  it('limits sign-in attempts per client address with the Rate Limiting binding', async () => {
    const ip = randomIp();
    const statuses: number[] = [];
    // Fixed windows: a burst crossing a window edge may get up to 10 more before the 429.
    for (let i = 0; i < 21 && !statuses.includes(429); i++) {
      statuses.push((await signIn({ email: uniqueEmail(), password: 'whatever password' }, { 'cf-connecting-ip': ip })).status);
    }
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(statuses).toContain(429);
  });

  it('rehashes a low-cost stored hash on successful login, never on a failed one', async () => {
    const email = uniqueEmail('legacy');
    const { scryptSync } = await import('node:crypto');
    const salt = Buffer.alloc(16, 3);
    const key = scryptSync(PASSWORD, salt, 32, { N: 1024, r: 8, p: 1 });
    const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
    const legacy = `$scrypt$v=1$ln=10,r=8,p=1$${b64(salt)}$${b64(key)}`;
    const id = await createPasswordUser(env.DB, { email, passwordHash: legacy });
    const stored = async () =>
      (await env.DB.prepare('SELECT password_hash FROM users WHERE id = ?').bind(id).first<{ password_hash: string }>())!.password_hash;

    expect((await signIn({ email, password: 'wrong password at first' })).status).toBe(401);
    expect(await stored()).toBe(legacy);
    expect((await signIn({ email, password: PASSWORD })).status).toBe(200);
    expect(parseHash(await stored())).toMatchObject({ ln: 14, r: 8, p: 5 });
    expect((await signIn({ email, password: PASSWORD })).status).toBe(200);
  });

  it('rejects a malformed stored hash without crashing', async () => {
    const email = uniqueEmail('corrupt');
    await createPasswordUser(env.DB, { email, passwordHash: '$scrypt$v=1$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    expect((await signIn({ email, password: PASSWORD })).status).toBe(401);
  });

  it('rejects bad bodies before hashing', async () => {
    expect((await signIn({ email: 'a@b.c' })).status).toBe(400);
    expect((await signIn({ email: 'a@b.c', password: 'x', extra: 1 })).status).toBe(400);
    expect((await signIn({ email: 'a@b.c', password: 'x'.repeat(1024 * 1024) })).status).toBe(413);
    const res = await api('/api/basic-auth/sign-in', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":' });
    expect(res.status).toBe(400);
  });

  it('normalises email case and whitespace', async () => {
    const { email } = await makeUser();
    expect((await signIn({ email: `  ${email.toUpperCase()} `, password: PASSWORD })).status).toBe(200);
  });

  it('hashes new passwords with the current parameters', async () => {
    expect(parseHash(await hashPassword('some new password'))).toMatchObject({ ln: 14 });
  });
});
