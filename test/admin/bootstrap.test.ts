/** The bootstrap admin: created once, never reset, never duplicated (its own file: fresh D1). */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { apiWithEnv } from '../helpers';
import { randomIp } from '../auth/helpers';

const signIn = (vars: Record<string, string>, email: string, password: string) =>
  apiWithEnv(vars, '/api/basic-auth/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp(), 'x-or3-token-transport': 'bearer' },
    body: JSON.stringify({ email, password }),
  });

describe('bootstrap admin', () => {
  it('is created on first sign-in from its env vars, as a deployment admin', async () => {
    const vars = { OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'Root@Example.com', OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: 'initial admin password' };
    const res = await signIn(vars, 'root@example.com', 'initial admin password');
    expect(res.status).toBe(200);
    const { accessToken } = await res.json<{ accessToken: string }>();
    const session = await (await apiWithEnv(vars, '/api/auth/session', { headers: { authorization: `Bearer ${accessToken}` } })).json<any>();
    expect(session.session.deploymentAdmin).toBe(true);
  });

  it('a later change of the password variable does not reset the password', async () => {
    const changed = { OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'root@example.com', OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: 'a different password' };
    expect((await signIn(changed, 'root@example.com', 'a different password')).status).toBe(401);
    expect((await signIn(changed, 'root@example.com', 'initial admin password')).status).toBe(200);
  });

  it('a later change of the email variable does not add an admin', async () => {
    const other = { OR3_BASIC_AUTH_BOOTSTRAP_EMAIL: 'second@example.com', OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD: 'second admin password' };
    expect((await signIn(other, 'second@example.com', 'second admin password')).status).toBe(401);
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM users WHERE is_admin = 1').first<{ n: number }>())!;
    expect(n).toBe(1);
    const { m } = (await env.DB.prepare("SELECT count(*) AS m FROM users WHERE email = 'second@example.com'").first<{ m: number }>())!;
    expect(m).toBe(0);
  });
});
