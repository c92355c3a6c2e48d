/**
 * The first admin without a dead end (docs/auth.md "First admin"): on a deployment with no
 * admin, whatever the registration mode, a one-time setup link makes the first admin. Its own
 * file: a fresh D1 with no admin.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/crypto';
import { apiWithEnv, json } from '../helpers';
import { randomIp } from '../auth/helpers';

const post = (vars: Record<string, string>, path: string, body: unknown) =>
  apiWithEnv(vars, path, json(body, { 'cf-connecting-ip': randomIp(), 'x-or3-token-transport': 'bearer' }));
const invite = { OR3_BASIC_AUTH_REGISTRATION: 'invite' };
const closed = { OR3_BASIC_AUTH_REGISTRATION: 'closed' };
const admin = { email: 'First@Example.com', password: 'first admin password', confirmPassword: 'first admin password' };

/** What `npm run deploy` / `npm run setup-link` write: the hash of a fresh token. */
async function issueSetupToken(token: string) {
  await env.DB.prepare('INSERT INTO setup_tokens (token_hash, created_at) VALUES (?, ?)')
    .bind(await sha256Hex(token), Date.now())
    .run();
}

describe('first admin through the setup link', () => {
  it('with no admin, invite and closed registration point at the setup path instead of a dead end', async () => {
    const body = { email: 'someone@example.com', password: 'long enough password', confirmPassword: 'long enough password' };
    for (const [vars, code] of [
      [invite, 'invite_required'],
      [closed, 'registration_closed'],
    ] as const) {
      const res = await post(vars, '/api/basic-auth/register', body);
      expect(res.status).toBe(403);
      const err = await res.json<{ error: string; message: string }>();
      expect(err.error).toBe(code);
      expect(err.message).toMatch(/no admin yet.*setup/);
    }
    const status = await (await apiWithEnv(invite, '/api/setup')).json();
    expect(status).toEqual({ needed: true, tokenRequired: true });
  });

  it('in production refuses setup without a token, with an unknown token and with bad input', async () => {
    expect((await post(invite, '/api/setup/admin', admin)).status).toBe(403);
    const wrong = await post(invite, '/api/setup/admin', { ...admin, token: 'not-a-real-token' });
    expect(wrong.status).toBe(403);
    expect((await wrong.json<{ error: string }>()).error).toBe('invalid_setup_token');
    await issueSetupToken('bad-input-token');
    expect((await post(invite, '/api/setup/admin', { ...admin, token: 'bad-input-token', confirmPassword: 'other' })).status).toBe(400);
    expect((await post(invite, '/api/setup/admin', { ...admin, token: 'bad-input-token', password: 'short', confirmPassword: 'short' })).status).toBe(400);
    expect((await post(invite, '/api/setup/admin', { ...admin, token: 'bad-input-token', isAdmin: false })).status).toBe(400);
    expect((await post(invite, '/api/setup/admin', { ...admin, token: 'bad-input-token', email: 'nope' })).status).toBe(400);
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM users WHERE is_admin = 1').first<{ n: number }>())!;
    expect(n).toBe(0);
  });

  it('a valid link makes exactly one admin, once, even when redeemed twice at the same time', async () => {
    await issueSetupToken('the-one-time-token');
    const [a, b] = await Promise.all([
      post(closed, '/api/setup/admin', { ...admin, token: 'the-one-time-token' }),
      post(closed, '/api/setup/admin', { ...admin, email: 'second@example.com', token: 'the-one-time-token' }),
    ]);
    expect([a.status, b.status].sort()).toEqual([201, 409]);
    const { n } = (await env.DB.prepare('SELECT count(*) AS n FROM users WHERE is_admin = 1').first<{ n: number }>())!;
    expect(n).toBe(1);
    // Every pending link is gone with the first admin.
    const { t } = (await env.DB.prepare('SELECT count(*) AS t FROM setup_tokens').first<{ t: number }>())!;
    expect(t).toBe(0);

    const winner = a.status === 201 ? 'first@example.com' : 'second@example.com';
    const signIn = await post(invite, '/api/basic-auth/sign-in', { email: winner, password: admin.password });
    expect(signIn.status).toBe(200);
    const { accessToken } = await signIn.json<{ accessToken: string }>();
    const session = await (await apiWithEnv(invite, '/api/auth/session', { headers: { authorization: `Bearer ${accessToken}` } })).json<any>();
    expect(session.session.deploymentAdmin).toBe(true);
  });

  it('after setup, the link is dead, setup is no longer offered and refusals lose the hint', async () => {
    await issueSetupToken('a-late-token');
    const again = await post(invite, '/api/setup/admin', { ...admin, email: 'third@example.com', token: 'a-late-token' });
    expect(again.status).toBe(409);
    expect((await again.json<{ error: string }>()).error).toBe('setup_complete');
    expect(await (await apiWithEnv(invite, '/api/setup')).json()).toEqual({ needed: false, tokenRequired: true });
    const res = await post(invite, '/api/basic-auth/register', {
      email: 'x@example.com',
      password: 'long enough password',
      confirmPassword: 'long enough password',
    });
    expect((await res.json<{ message: string }>()).message).toBe('Registration requires an invite');
  });
});
