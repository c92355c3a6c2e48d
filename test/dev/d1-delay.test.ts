/** The bench's far-away D1 (src/dev/d1-delay.ts, docs/configuration.md `OR3_DEV_D1_DELAY_MS`): development only. */
import { describe, expect, it } from 'vitest';
import { api, apiWithEnv } from '../helpers';

const count = async (vars: Record<string, string>) => {
  const res = await apiWithEnv(vars, '/api/dev/d1-queries');
  return { status: res.status, body: await res.json<any>() };
};

describe('OR3_DEV_D1_DELAY_MS', () => {
  it('in development it counts the D1 queries it delayed, and the route answers the count', async () => {
    const vars = { ENVIRONMENT: 'development', OR3_DEV_D1_DELAY_MS: '1' };
    const before = await count(vars);
    expect(before.status).toBe(200);
    const email = `far-${crypto.randomUUID()}@example.com`;
    const password = 'correct horse battery staple';
    const registered = await apiWithEnv(vars, '/api/basic-auth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': `10.31.${Math.floor(Math.random() * 250)}.7` },
      body: JSON.stringify({ email, password, confirmPassword: password }),
    });
    expect(registered.status).toBe(200);
    const after = await count(vars);
    expect(after.body.delayed).toBeGreaterThan(before.body.delayed); // registering writes the user to D1
    expect((await count(vars)).body.delayed).toBe(after.body.delayed); // reading the count queries nothing
  });

  it('answers 404 in production, and in development without the delay, like any unknown route', async () => {
    const production: Record<string, string> = { ENVIRONMENT: 'production', OR3_DEV_D1_DELAY_MS: '100' };
    for (const res of [
      await api('/api/dev/d1-queries'),
      await apiWithEnv(production, '/api/dev/d1-queries'),
      await apiWithEnv({ ENVIRONMENT: 'development' }, '/api/dev/d1-queries'),
    ]) {
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: 'not_found' });
    }
  });
});
