import { describe, expect, it } from 'vitest';
import { api, apiWithEnv } from './helpers';

describe('GET /api/health', () => {
  it('answers ok with timestamp, uptime and version, without auth', async () => {
    const res = await api('/api/health');
    expect(res.status).toBe(200);
    const body = await res.json<Record<string, unknown>>();
    expect(body.status).toBe('ok');
    expect(typeof body.version).toBe('string');
    expect(typeof body.uptime).toBe('number');
    expect(new Date(body.timestamp as string).toString()).not.toBe('Invalid Date');
    expect(body).not.toHaveProperty('providers');
  });

  it('is the one /api route without no-store', async () => {
    const res = await api('/api/health');
    expect(res.headers.get('cache-control')).toBeNull();
  });

  it('deep check really reaches the Durable Object, R2 and D1', async () => {
    const res = await api('/api/health?deep=true');
    expect(res.status).toBe(200);
    const body = await res.json<any>();
    expect(body.status).toBe('ok');
    for (const name of ['sync', 'storage', 'auth']) {
      expect(body.providers[name].available, name).toBe(true);
      expect(body.providers[name].latencyMs).toBeGreaterThanOrEqual(0);
      expect(body.providers[name]).not.toHaveProperty('error');
    }
  });

  it('deep check answers degraded with 503 naming the provider that failed', async () => {
    const brokenR2 = { head: async () => Promise.reject(new Error('R2 unreachable')) };
    const res = await apiWithEnv({ BLOBS: brokenR2 }, '/api/health?deep=true');
    expect(res.status).toBe(503);
    const body = await res.json<any>();
    expect(body.status).toBe('degraded');
    expect(body.providers.storage).toMatchObject({ available: false, error: 'R2 unreachable' });
    expect(body.providers.sync.available).toBe(true);
    expect(body.providers.auth.available).toBe(true);
  });

  it('deep check reports D1 unavailable when its query fails', async () => {
    const brokenD1 = {
      prepare: () => {
        throw new Error('D1_ERROR: no such table: users');
      },
    };
    const res = await apiWithEnv({ DB: brokenD1 }, '/api/health?deep=true');
    expect(res.status).toBe(503);
    const body = await res.json<any>();
    expect(body.providers.auth).toMatchObject({ available: false, error: 'D1_ERROR: no such table: users' });
  });
});
