/** In development the setup path needs no link (every secret there is public anyway). Own file: fresh D1. */
import { env } from 'cloudflare:workers';
import { expect, it } from 'vitest';
import { apiWithEnv, json } from '../helpers';
import { randomIp } from '../auth/helpers';

const dev = { ENVIRONMENT: 'development', OR3_BASIC_AUTH_REGISTRATION: 'invite' };

it('development: setup without a token makes the first admin, then is closed', async () => {
  expect(await (await apiWithEnv(dev, '/api/setup')).json()).toEqual({ needed: true, tokenRequired: false });
  const body = { email: 'dev-admin@example.com', password: 'dev admin password', confirmPassword: 'dev admin password' };
  const res = await apiWithEnv(dev, '/api/setup/admin', json(body, { 'cf-connecting-ip': randomIp(), origin: 'http://localhost:5173' }));
  expect(res.status).toBe(201);
  const row = await env.DB.prepare('SELECT is_admin FROM users WHERE email = ?').bind('dev-admin@example.com').first<{ is_admin: number }>();
  expect(row?.is_admin).toBe(1);
  const again = await apiWithEnv(
    dev,
    '/api/setup/admin',
    json({ ...body, email: 'other@example.com' }, { 'cf-connecting-ip': randomIp(), origin: 'http://localhost:5173' }),
  );
  expect(again.status).toBe(409);
});
