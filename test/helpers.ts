/**
 * Small helpers for integration tests: every request goes through the real Worker
 * (`exports.default.fetch`), or through the same Worker code with a modified env when a test
 * needs another configuration.
 */
import { env, exports } from 'cloudflare:workers';
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test';
import worker from '../src/index';
import type { Bindings } from '../src/env';

export const BASE = 'https://or3.test';

export function api(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(`${BASE}${path}`, init));
}

/** Calls the Worker's fetch handler with `overrides` layered over the test env. */
export async function apiWithEnv(overrides: Partial<Record<keyof Bindings, unknown>>, path: string, init?: RequestInit) {
  const modified = { ...(env as unknown as Bindings), ...overrides } as Bindings;
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`${BASE}${path}`, init), modified, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

export const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

/**
 * The real app with one extra probe router mounted, for exercising the plumbing (body reading,
 * errors) through the same middleware stack production uses.
 */
export async function probeFetch(
  app: { fetch: (r: Request, e: Bindings, c: ExecutionContext) => Response | Promise<Response> },
  path: string,
  init?: RequestInit,
  overrides: Partial<Record<keyof Bindings, unknown>> = {},
) {
  const modified = { ...(env as unknown as Bindings), ...overrides } as Bindings;
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`${BASE}${path}`, init), modified, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Counts every D1 call made through a binding: statements prepared, batches, execs, sessions. */
export function countingDb(db: D1Database) {
  const counter = { calls: 0 };
  const wrapped = new Proxy(db, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (['prepare', 'batch', 'exec', 'withSession', 'dump'].includes(String(name))) counter.calls++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { db: wrapped as D1Database, counter };
}
