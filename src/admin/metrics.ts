/**
 * `GET /api/admin/metrics` (docs/operations.md "Metrics"): deployment-wide numbers rolled up on
 * read from each workspace object's own counters (src/workspace-db/metrics.ts) plus a few D1
 * counts, so no request ever writes to anything central. JSON by default (a flat object of
 * numbers); `Accept: text/plain` gives the Prometheus text exposition format 0.0.4.
 * `GET /api/admin/metrics/workspaces/:id` is one workspace's hourly and daily buckets;
 * `GET /api/admin/metrics/series` the deployment's, rolled up the same way (the console's charts).
 *
 * The fan-out is bounded: the ROLLUP_LIMIT most recently updated live workspaces are asked,
 * ROLLUP_CONCURRENCY at a time; `or3_workspaces_counted` says how many answered.
 */
import { Hono, type Context } from 'hono';
import type { AppEnv } from '../env';
import { notFound } from '../errors';
import { logEvent } from '../http/logger';
import { isPeak, type Counters, type MeterReading } from '../workspace-db/metrics';
import { param } from '../http/param';
import { workspaceExists } from '../workspace-records/store';

const ROLLUP_LIMIT = 500;
const ROLLUP_CONCURRENCY = 25;
const HOUR_MS = 3600_000;

/** Metric name → help text; counters named in the buckets map onto these. */
const SYNC_COUNTERS: Record<string, string> = {
  ops_pushed: 'Ops pushed (HTTP and socket)',
  ops_pulled: 'Changes pulled (HTTP and socket)',
  bytes_in: 'Bytes of pushed ops (stored size)',
  bytes_out: 'Bytes of pulled changes (wire JSON)',
  peak_sockets: 'Most sockets open at once in any one workspace',
  peak_presence: 'Largest presence roster (devices) in any one workspace',
};

/** Sums counters; peaks (`peak_*`) take the maximum: the busiest single workspace, the figure an object's limits bound. */
function add(into: Counters, from: Counters | undefined) {
  for (const [name, n] of Object.entries(from ?? {})) {
    if (typeof n === 'number') into[name] = isPeak(name) ? Math.max(into[name] ?? 0, n) : (into[name] ?? 0) + n;
  }
}

async function readings(c: Context<AppEnv>): Promise<{ total: number; counted: number; readings: MeterReading[] }> {
  const db = c.env.DB;
  const total = (await db.prepare('SELECT count(*) AS n FROM workspaces WHERE deleted_at IS NULL').first<{ n: number }>())?.n ?? 0;
  const { results } = await db
    .prepare('SELECT id FROM workspaces WHERE deleted_at IS NULL ORDER BY updated_at DESC LIMIT ?')
    .bind(ROLLUP_LIMIT)
    .all<{ id: string }>();
  const out: MeterReading[] = [];
  for (let i = 0; i < results.length; i += ROLLUP_CONCURRENCY) {
    const batch = await Promise.all(
      results.slice(i, i + ROLLUP_CONCURRENCY).map(({ id }) =>
        c.env.WORKSPACE.getByName(id)
          .metrics()
          .catch((err: unknown) => {
            logEvent('warn', 'metrics_read_failed', { workspaceId: id, message: err instanceof Error ? err.message : String(err) });
            return null;
          }),
      ),
    );
    for (const r of batch) if (r) out.push(r as MeterReading);
  }
  return { total, counted: out.length, readings: out };
}

/** The flat JSON object: every value a number. */
async function rollUp(c: Context<AppEnv>, now = Date.now()): Promise<Record<string, number>> {
  const db = c.env.DB;
  const users = await db
    .prepare('SELECT count(*) AS total, count(disabled_at) AS disabled, coalesce(sum(is_admin), 0) AS admins FROM users')
    .first<{ total: number; disabled: number; admins: number }>();
  const { total, counted, readings: all } = await readings(c);
  const today = new Date(Math.floor(now / (24 * HOUR_MS)) * 24 * HOUR_MS).toISOString();
  const hour = new Date(Math.floor(now / HOUR_MS) * HOUR_MS).toISOString();
  const day: Counters = {};
  const lastHour: Counters = {};
  const kept: Counters = {};
  for (const r of all) {
    add(day, r.days[today]);
    add(lastHour, r.hours[hour]);
    for (const counters of Object.values(r.days)) add(kept, counters);
  }
  const flat: Record<string, number> = {
    or3_users_total: users?.total ?? 0,
    or3_users_disabled: users?.disabled ?? 0,
    or3_deployment_admins: users?.admins ?? 0,
    or3_workspaces_total: total,
    or3_workspaces_counted: counted,
  };
  const names = new Set([...Object.keys(SYNC_COUNTERS), ...Object.keys(kept)]);
  for (const name of [...names].sort()) {
    flat[`or3_sync_${name}_today`] = day[name] ?? 0;
    flat[`or3_sync_${name}_this_hour`] = lastHour[name] ?? 0;
    flat[`or3_sync_${name}_35d`] = kept[name] ?? 0;
  }
  return flat;
}

/** Prometheus text format 0.0.4: one gauge per name (day and hour buckets reset, so not counters). */
export function prometheusText(flat: Record<string, number>): string {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(flat)) {
    const safe = name.replace(/[^a-zA-Z0-9_]/g, '_');
    const base = safe.replace(/_(today|this_hour|35d)$/, '').replace(/^or3_sync_/, '');
    const help = SYNC_COUNTERS[base] ?? (base.startsWith('refused_') ? `Sync requests refused: ${base.slice(8)}` : safe.replace(/_/g, ' '));
    lines.push(`# HELP ${safe} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${safe} gauge`, `${safe} ${Number.isFinite(value) ? value : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Every workspace's buckets added up per bucket (peaks: the maximum), oldest first. */
function series(all: MeterReading[]): MeterReading {
  const out: MeterReading = { hours: {}, days: {} };
  for (const r of all) {
    for (const kind of ['hours', 'days'] as const) for (const [start, counters] of Object.entries(r[kind])) add((out[kind][start] ??= {}), counters);
  }
  const sorted = (o: Record<string, Counters>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  return { hours: sorted(out.hours), days: sorted(out.days) };
}

export const metricsAdmin = new Hono<AppEnv>()
  .get('/metrics/series', async (c) => {
    const { counted, readings: all } = await readings(c);
    return c.json({ workspacesCounted: counted, ...series(all) });
  })

  .get('/metrics', async (c) => {
    const flat = await rollUp(c);
    const accept = c.req.header('accept') ?? '';
    if (/text\/plain/i.test(accept) && !/application\/json/i.test(accept)) {
      return c.body(prometheusText(flat), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    }
    return c.json(flat);
  })

  .get('/metrics/workspaces/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    return c.json({ workspaceId, ...((await c.env.WORKSPACE.getByName(workspaceId).metrics()) as MeterReading) });
  });
