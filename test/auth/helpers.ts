/**
 * Auth helpers for integration tests. Users are inserted with a password hash computed once
 * per test file (scrypt is deliberately slow), then signed in through the real routes.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { hashPassword } from '../../src/auth/passwords';
import { createPasswordUser } from '../../src/auth/store';
import { api } from '../helpers';

export const PASSWORD = 'correct horse battery staple';
let passwordHash: Promise<string> | undefined;

/** A fresh documentation-range (2001:db8::/32) client address, so per-IP limits never couple tests. */
export const randomIp = () => {
  const [a, b] = crypto.getRandomValues(new Uint16Array(2));
  return `2001:db8::${a!.toString(16)}:${b!.toString(16)}`;
};

export const uniqueEmail = (tag = 'user') => `${tag}-${crypto.randomUUID().slice(0, 12)}@example.com`;

export async function makeUser(opts: { email?: string; isAdmin?: boolean; displayName?: string } = {}) {
  const email = opts.email ?? uniqueEmail();
  passwordHash ??= hashPassword(PASSWORD);
  const id = await createPasswordUser(env.DB, {
    email,
    passwordHash: await passwordHash,
    isAdmin: opts.isAdmin ?? false,
    displayName: opts.displayName ?? null,
  });
  if (!id) throw new Error(`user ${email} exists`);
  return { id, email };
}

export interface SignedIn {
  id: string;
  email: string;
  accessToken: string;
  refreshToken: string;
  headers: Record<string, string>;
}

export async function signInBearer(email: string, password = PASSWORD): Promise<Omit<SignedIn, 'id' | 'email'> & { res: Response }> {
  const res = await api('/api/basic-auth/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': randomIp() },
    body: JSON.stringify({ email, password }),
  });
  if (res.status !== 200) return { res, accessToken: '', refreshToken: '', headers: {} };
  const body = await res.clone().json<{ accessToken: string; refreshToken: string }>();
  return { res, accessToken: body.accessToken, refreshToken: body.refreshToken, headers: { authorization: `Bearer ${body.accessToken}` } };
}

/** A new user, signed in with bearer tokens. */
export async function signedInUser(opts: { isAdmin?: boolean; displayName?: string } = {}): Promise<SignedIn> {
  const user = await makeUser(opts);
  const session = await signInBearer(user.email);
  if (!session.accessToken) throw new Error(`sign-in failed: ${session.res.status}`);
  return { ...user, accessToken: session.accessToken, refreshToken: session.refreshToken, headers: session.headers };
}

/** JSON request helper with auth headers. */
export function call(method: string, path: string, auth: Record<string, string>, body?: unknown) {
  const headers: Record<string, string> = { ...auth };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return api(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** Parses Set-Cookie headers into name → attributes. */
export function cookiesOf(res: Response): Record<string, { value: string; attrs: Record<string, string | true> }> {
  const out: Record<string, { value: string; attrs: Record<string, string | true> }> = {};
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...rest] = line.split(';').map((s) => s.trim());
    const [name, ...valueParts] = pair!.split('=');
    const attrs: Record<string, string | true> = {};
    for (const a of rest) {
      const [k, ...v] = a.split('=');
      attrs[k!.toLowerCase()] = v.length ? v.join('=') : true;
    }
    out[name!] = { value: valueParts.join('='), attrs };
  }
  return out;
}

/** Signs in through the cookie transport; returns the response and its auth cookie values. */
export async function signInCookies(email: string, password = PASSWORD) {
  const res = await api('/api/basic-auth/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
    body: JSON.stringify({ email, password }),
  });
  const cookies = cookiesOf(res);
  return { res, access: cookies.or3_access?.value ?? '', refresh: cookies.or3_refresh?.value ?? '' };
}

/**
 * An OIDC provider for tests: `vars` configure it (provider id `idp`, audience `or3`, its JWKS
 * inline), `token(sub)` signs a 10-minute token for that subject (with `claims` beside its email).
 */
export async function oidcProvider(issuer: string) {
  const pair = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
  const vars = { OR3_AUTH_OIDC_PROVIDERS: JSON.stringify([{ id: 'idp', issuer, audience: 'or3', jwks: { keys: [jwk] } }]) };
  const token = (sub: string, email = `${sub}@example.com`, claims: Record<string, unknown> = {}) =>
    new SignJWT({ email, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(issuer)
      .setAudience('or3')
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(pair.privateKey);
  return { vars, token };
}

/** Rows from a user's object (src/user-db/), where their sessions and refresh tokens live. */
export function userRows<T = Record<string, unknown>>(userId: string, query: string, ...args: unknown[]): Promise<T[]> {
  return runInDurableObject(
    env.USER_DB.getByName(userId),
    (_instance, state) => state.storage.sql.exec(query, ...(args as SqlStorageValue[])).toArray() as T[],
  );
}

/** A count from a user's object: `query` selects `count(*) AS n`. */
export async function userCount(userId: string, query: string, ...args: unknown[]): Promise<number> {
  return ((await userRows<{ n: number }>(userId, query, ...args))[0]?.n as number) ?? 0;
}
