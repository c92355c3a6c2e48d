import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { HTTPException } from 'hono/http-exception';
import { createApp } from '../src/app';
import { jsonBody } from '../src/http/body';
import { conflict } from '../src/errors';
import { LIMITS } from '../src/limits';
import { api, probeFetch } from './helpers';

// The real middleware stack with a probe router that uses the real body reader and errors.
const app = createApp({
  mountExtra: (a) => {
    a.post('/api/probe/echo', async (c) => {
      const body = await jsonBody(c, z.strictObject({ name: z.string().min(1), payload: z.record(z.string(), z.unknown()).optional() }));
      return c.json({ ok: true, body });
    });
    a.post('/api/probe/optional', async (c) => c.json(await jsonBody(c, z.strictObject({ n: z.number().optional() }), { allowEmpty: true })));
    a.post('/api/probe/conflict', () => {
      throw conflict('Already exists');
    });
    a.get('/api/probe/http-exception', () => {
      throw new HTTPException(418, { message: 'I am a teapot' });
    });
    a.get('/api/probe/crash', () => {
      throw new Error('secret internal detail at db.ts:42');
    });
  },
});
const probe = (path: string, init?: RequestInit, overrides = {}) => probeFetch(app, path, init, overrides);
const post = (body: string, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body,
});

afterEach(() => vi.restoreAllMocks());

describe('request ids', () => {
  it('generates one per request and echoes it', async () => {
    const a = await api('/api/health');
    const b = await api('/api/health');
    expect(a.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
  });

  it('keeps a well-formed incoming id and replaces a malformed one', async () => {
    expect((await api('/api/health', { headers: { 'x-request-id': 'client-123.abc' } })).headers.get('x-request-id')).toBe('client-123.abc');
    const bad = await api('/api/health', { headers: { 'x-request-id': '<script>' + 'x'.repeat(200) } });
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('is echoed on errors too', async () => {
    const res = await api('/api/nope', { headers: { 'x-request-id': 'trace-404' } });
    expect(res.headers.get('x-request-id')).toBe('trace-404');
  });
});

describe('request log', () => {
  it('writes one JSON line per request with level, id, method, path, status and duration', async () => {
    const lines: string[] = [];
    for (const m of ['log', 'warn', 'error'] as const) vi.spyOn(console, m).mockImplementation((s) => void lines.push(String(s)));
    await api('/api/health?token=do-not-log', { headers: { 'x-request-id': 'log-probe' } });
    const mine = lines.map((l) => JSON.parse(l)).filter((l) => l.requestId === 'log-probe');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ level: 'info', method: 'GET', path: '/api/health', status: 200 });
    expect(typeof mine[0].durationMs).toBe('number');
    expect(lines.join('\n')).not.toContain('do-not-log');
  });

  it('logs an unexpected error with its message but no stack in production', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((s) => void lines.push(String(s)));
    await probe('/api/probe/crash', { headers: { 'x-request-id': 'crash-prod' } });
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.requestId === 'crash-prod');
    expect(line).toMatchObject({ level: 'error', status: 500, error: 'secret internal detail at db.ts:42' });
    expect(line).not.toHaveProperty('stack');
  });

  it('adds the stack outside production', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((s) => void lines.push(String(s)));
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    await probe('/api/probe/crash', { headers: { 'x-request-id': 'crash-dev' } }, { ENVIRONMENT: 'development' });
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.requestId === 'crash-dev');
    expect(line.stack).toContain('secret internal detail');
  });
});

describe('error envelope', () => {
  it('maps typed errors to { error, message } with their status', async () => {
    const res = await probe('/api/probe/conflict', post('{}'));
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({ error: 'conflict', message: 'Already exists' });
  });

  it('keeps the status of a Hono HTTPException, in the JSON envelope', async () => {
    const res = await probe('/api/probe/http-exception');
    expect(res.status).toBe(418);
    expect(await res.json()).toEqual({ error: 'http_error', message: 'I am a teapot' });
  });

  it('answers an unexpected error with a generic 500 that carries no internals', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const res = await probe('/api/probe/crash');
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ error: 'internal_error', message: 'Internal server error' });
    expect(text).not.toContain('db.ts');
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await api('/api/does-not-exist');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toMatchObject({ error: 'not_found' });
  });

  it('answers a known path with the wrong method with 405 and Allow', async () => {
    const res = await api('/api/health', { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(await res.json()).toMatchObject({ error: 'method_not_allowed' });
    const probeRes = await probe('/api/probe/echo');
    expect(probeRes.status).toBe(405);
    expect(probeRes.headers.get('allow')).toBe('POST');
  });
});

describe('Cache-Control', () => {
  it('sets no-store and Pragma: no-cache on /api responses, errors included', async () => {
    for (const res of [await probe('/api/probe/echo', post('{"name":"a"}')), await api('/api/nope'), await probe('/api/probe/echo', { method: 'PUT' })]) {
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('pragma')).toBe('no-cache');
    }
  });
});

describe('JSON bodies', () => {
  it('accepts a valid body', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a","payload":{"anything":1}}'));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, body: { name: 'a', payload: { anything: 1 } } });
  });

  it('rejects an unknown envelope field with a message naming it', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a","nmae":"typo"}'));
    expect(res.status).toBe(400);
    const body = await res.json<{ error: string; message: string }>();
    expect(body.error).toBe('invalid_body');
    expect(body.message).toContain("'nmae'");
  });

  it('leaves nested payload objects open', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a","payload":{"new_column":true}}'));
    expect(res.status).toBe(200);
  });

  it('rejects malformed JSON with 400', async () => {
    const res = await probe('/api/probe/echo', post('{"name":'));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_json' });
  });

  it('rejects wrong types with a message naming the field', async () => {
    const res = await probe('/api/probe/echo', post('{"name":42}'));
    expect(res.status).toBe(400);
    expect((await res.json<{ message: string }>()).message).toMatch(/^name: /);
  });

  it('rejects a missing body unless the route allows it', async () => {
    expect((await probe('/api/probe/echo', { method: 'POST' })).status).toBe(400);
    const ok = await probe('/api/probe/optional', { method: 'POST' });
    expect(ok.status).toBe(200);
  });

  it('rejects a non-JSON content type with 415', async () => {
    const res = await probe('/api/probe/echo', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"name":"a"}' });
    expect(res.status).toBe(415);
  });

  it('refuses a body over the cap by Content-Length with 413', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(LIMITS.jsonBodyBytes) });
    const res = await probe('/api/probe/echo', post(big));
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: 'payload_too_large' });
  });

  it('refuses a streamed body over the cap even without Content-Length', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode('{"name":"'));
        if (sent > LIMITS.jsonBodyBytes + chunk.byteLength) return controller.close();
        controller.enqueue(chunk);
        sent += chunk.byteLength;
      },
    });
    const res = await probe('/api/probe/echo', { method: 'POST', headers: { 'content-type': 'application/json' }, body: stream });
    expect(res.status).toBe(413);
  });
});

describe('CSRF guard for cookie-authenticated mutations', () => {
  const cookie = { cookie: 'or3_access=some.jwt.value' };

  it('refuses a cookie-carrying POST from a foreign origin', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a"}', { ...cookie, origin: 'https://evil.example.net' }));
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'csrf_rejected' });
  });

  it('refuses a cross-site POST without Origin when Sec-Fetch-Site says cross-site', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a"}', { ...cookie, 'sec-fetch-site': 'cross-site' }));
    expect(res.status).toBe(403);
  });

  it('refuses a cookie-carrying form post (non-JSON body) with 415 even from an allowed origin', async () => {
    const res = await probe('/api/probe/echo', {
      method: 'POST',
      headers: { ...cookie, origin: 'https://app.example.com', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'name=a',
    });
    expect(res.status).toBe(415);
  });

  it('allows the allow-listed origin and the same origin', async () => {
    for (const origin of ['https://app.example.com', 'https://or3.test']) {
      const res = await probe('/api/probe/echo', post('{"name":"a"}', { ...cookie, origin }));
      expect(res.status, origin).toBe(200);
    }
  });

  it('treats Cloudflare Access assertions as ambient credentials', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a"}', { 'cf-access-jwt-assertion': 'x.y.z', origin: 'https://evil.example.net' }));
    expect(res.status).toBe(403);
  });

  it('does not apply to bearer requests without cookies', async () => {
    const res = await probe('/api/probe/echo', post('{"name":"a"}', { authorization: 'Bearer x', origin: 'https://elsewhere.example.org' }));
    expect(res.status).toBe(200);
  });
});
