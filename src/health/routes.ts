/**
 * `GET /api/health`: liveness without auth. `?deep=true` really touches each provider:
 * D1 (a query on the users table, so missing migrations show up), the workspace Durable Object
 * (an RPC ping on a dedicated health object) and R2 (a HEAD), each timed and bounded by a
 * timeout so a hung dependency cannot hang the probe.
 *
 * A deep check with any provider down answers `degraded` with HTTP 503, so load balancers and
 * uptime monitors that only read the status code still notice; the shallow check is 200
 * whenever the Worker runs.
 */
import { Hono } from 'hono';
import { version } from '../../package.json';
import { probeUsersTable } from '../auth/store';
import type { AppEnv, Bindings } from '../env';

const PROBE_TIMEOUT_MS = 5_000;
/** The Durable Object name used only for health pings; never a real workspace id (ids are UUIDs). */
export const HEALTH_OBJECT_NAME = '__health__';

export interface ProviderHealth {
  available: boolean;
  latencyMs: number;
  error?: string;
}

let startedAt: number | undefined;

async function probe(check: () => Promise<unknown>): Promise<ProviderHealth> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
      }),
    ]);
    return { available: true, latencyMs: elapsed(started) };
  } catch (err) {
    // Only the message: provider errors can be long, never include a stack or a secret.
    return { available: false, latencyMs: elapsed(started), error: err instanceof Error ? err.message : String(err) };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

const elapsed = (started: number) => Math.round((performance.now() - started) * 100) / 100;

/** The three provider probes, run together. */
function checkProviders(env: Bindings) {
  return Promise.all([
    probe(() => env.WORKSPACE.getByName(HEALTH_OBJECT_NAME).ping()),
    probe(() => env.BLOBS.head('health/probe')),
    probe(() => probeUsersTable(env.DB)),
  ]).then(([sync, storage, auth]) => ({ sync, storage, auth }));
}

export const health = new Hono<AppEnv>().get('/', async (c) => {
  startedAt ??= Date.now();
  const body: Record<string, unknown> = {
    status: 'ok',
    timestamp: new Date().toISOString(),
    uptime: Math.round((Date.now() - startedAt) / 1000),
    version,
  };
  if (c.req.query('deep') !== 'true') return c.json(body, 200);

  const providers = await checkProviders(c.env);
  const healthy = Object.values(providers).every((p) => p.available);
  body.status = healthy ? 'ok' : 'degraded';
  body.providers = providers;
  return c.json(body, healthy ? 200 : 503);
});
