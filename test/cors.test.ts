import { describe, expect, it, vi } from 'vitest';
import { api, apiWithEnv } from './helpers';

const ALLOWED = 'https://app.example.com';
const EVIL = 'https://evil.example.net';

describe('CORS', () => {
  it('echoes an allowed origin exactly, with credentials and Vary: Origin', async () => {
    const res = await api('/api/health', { headers: { origin: ALLOWED } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('vary')).toContain('Origin');
    expect(res.headers.get('access-control-expose-headers')).toContain('x-request-id');
  });

  it('gives an unknown origin no CORS headers', async () => {
    const res = await api('/api/health', { headers: { origin: EVIL } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('never allows the null origin', async () => {
    const res = await api('/api/health', { headers: { origin: 'null' } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers an allowed preflight with 204 and Access-Control-Max-Age: 3600', async () => {
    const res = await api('/api/sync/push', {
      method: 'OPTIONS',
      headers: { origin: ALLOWED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(res.headers.get('access-control-max-age')).toBe('3600');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')).toContain('content-type');
    expect(res.headers.get('access-control-allow-headers')).toContain('x-or3-cloud-intent');
  });

  it('refuses a preflight from an unknown origin with 403 and no CORS headers', async () => {
    const res = await api('/api/sync/push', {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST' },
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect((await res.json<{ error: string }>()).error).toBe('cors_denied');
  });

  it('a refused preflight logs one line naming the origin and OR3_ALLOWED_ORIGINS; the body says so in development only', async () => {
    const lines: string[] = [];
    const spies = (['log', 'warn', 'error'] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation((text: unknown) => void lines.push(String(text))),
    );
    try {
      const preflight = { method: 'OPTIONS', headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'POST' } };
      const prod = await apiWithEnv({}, '/api/sync/push', preflight);
      const refusals = lines.filter((l) => l.includes('http://localhost:3000'));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toContain('OR3_ALLOWED_ORIGINS');
      expect(JSON.parse(refusals[0]!)).toMatchObject({ status: 403, method: 'OPTIONS', corsRefusedOrigin: 'http://localhost:3000' });
      expect((await prod.json<{ message: string }>()).message).toBe('Origin http://localhost:3000 is not allowed');

      const dev = await apiWithEnv({ ENVIRONMENT: 'development' }, '/api/sync/push', preflight);
      expect(dev.status).toBe(403);
      expect((await dev.json<{ message: string }>()).message).toMatch(
        /^Origin http:\/\/localhost:3000 is not allowed: add http:\/\/localhost:3000 to OR3_ALLOWED_ORIGINS/,
      );
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('in development with "*", echoes the caller origin and never sends "*"', async () => {
    const res = await apiWithEnv({ ENVIRONMENT: 'development', OR3_ALLOWED_ORIGINS: '*' }, '/api/health', {
      headers: { origin: 'http://10.1.2.3:3000' },
    });
    expect(res.headers.get('access-control-allow-origin')).toBe('http://10.1.2.3:3000');
  });

  it('in development always allows the local dev server origins', async () => {
    const res = await apiWithEnv({ ENVIRONMENT: 'development' }, '/api/health', { headers: { origin: 'http://localhost:5173' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    const prod = await api('/api/health', { headers: { origin: 'http://localhost:5173' } });
    expect(prod.headers.get('access-control-allow-origin')).toBeNull();
  });
});
