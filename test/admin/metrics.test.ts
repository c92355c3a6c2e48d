/** GET /api/admin/metrics: per-object counters rolled up on read, JSON and Prometheus text (docs/operations.md "Metrics"). */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import { Meter } from '../../src/workspace-db/metrics';
import { api } from '../helpers';
import { call, signedInUser, type SignedIn } from '../auth/helpers';
import { message, op, pull, push, pushOk, syncUser } from '../sync/helpers';

let root: SignedIn;
beforeAll(async () => {
  root = await signedInUser({ isAdmin: true });
});

const metrics = async () => {
  const res = await call('GET', '/api/admin/metrics', root.headers);
  expect(res.status).toBe(200);
  return res.json<Record<string, number>>();
};

/** A strict reader of the Prometheus text format 0.0.4: every sample named, typed and numeric. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped)$/.exec(line);
    if (type) {
      typed.add(type[1]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$/.exec(line);
    expect(sample, `bad line: ${line}`).not.toBeNull();
    expect(typed.has(sample![1]!), `untyped sample ${sample![1]}`).toBe(true);
    samples.set(sample![1]!, Number(sample![2]));
  }
  return samples;
}

describe('GET /api/admin/metrics', () => {
  it('moves with pushes, pulls and refusals at once, as JSON and as Prometheus text', async () => {
    const before = await metrics();
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1')), op('messages', 'm2', message('m2'))]);
    await pull(u, u.workspaceId, 0);
    const stranger = await syncUser();
    expect((await push(stranger, u.workspaceId, [op('messages', 'x', message('x'))])).status).toBe(403);

    const after = await metrics();
    for (const value of Object.values(after)) expect(typeof value).toBe('number');
    expect(after.or3_sync_ops_pushed_today! - (before.or3_sync_ops_pushed_today ?? 0)).toBe(2);
    expect(after.or3_sync_ops_pulled_today! - (before.or3_sync_ops_pulled_today ?? 0)).toBe(2);
    expect(after.or3_sync_ops_pushed_this_hour).toBeGreaterThanOrEqual(2);
    expect(after.or3_sync_bytes_in_today!).toBeGreaterThan(before.or3_sync_bytes_in_today ?? 0);
    expect(after.or3_sync_bytes_out_today!).toBeGreaterThan(before.or3_sync_bytes_out_today ?? 0);
    expect(Object.entries(after).some(([k, v]) => k.startsWith('or3_sync_refused_') && k.endsWith('_today') && v >= 1)).toBe(true);
    expect(after.or3_users_total).toBeGreaterThanOrEqual(3);

    const text = await call('GET', '/api/admin/metrics', { ...root.headers, accept: 'text/plain' });
    expect(text.headers.get('content-type')).toContain('text/plain; version=0.0.4');
    const samples = parsePrometheus(await text.text());
    expect(samples.get('or3_sync_ops_pushed_today')).toBe(after.or3_sync_ops_pushed_today);
  });

  it('is for deployment admins only', async () => {
    const owner = await syncUser();
    expect((await call('GET', '/api/admin/metrics', owner.headers)).status).toBe(403);
    expect((await api('/api/admin/metrics')).status).toBe(401);
    expect((await call('GET', `/api/admin/metrics/workspaces/${owner.workspaceId}`, owner.headers)).status).toBe(403);
  });

  it("shows one workspace's hourly and daily buckets; unknown workspace 404", async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    const res = await call('GET', `/api/admin/metrics/workspaces/${u.workspaceId}`, root.headers);
    const body = await res.json<any>();
    expect(Object.values(body.hours)).toEqual([expect.objectContaining({ ops_pushed: 1 })]);
    expect(Object.values(body.days)).toEqual([expect.objectContaining({ ops_pushed: 1 })]);
    expect((await call('GET', `/api/admin/metrics/workspaces/${crypto.randomUUID()}`, root.headers)).status).toBe(404);
  });
});

describe('Meter', () => {
  it('keeps at most 48 hourly and 35 daily buckets', async () => {
    const u = await syncUser();
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_instance, state) => {
      const meter = new Meter(state.storage);
      const start = Date.UTC(2026, 0, 1);
      for (let h = 0; h < 24 * 40; h += 1) {
        meter.count('ops_pushed', 1, start + h * 3600_000);
        meter.flush(start + h * 3600_000);
      }
      const reading = meter.read(start + 24 * 40 * 3600_000 - 1);
      expect(Object.keys(reading.hours).length).toBeLessThanOrEqual(49);
      expect(Object.keys(reading.days).length).toBeLessThanOrEqual(36);
      expect(Object.values(reading.days).at(-1)).toEqual({ ops_pushed: 24 });
    });
  });
});
