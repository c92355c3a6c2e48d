/** GET /api/admin/metrics: per-object counters rolled up on read, JSON and Prometheus text (docs/operations.md "Metrics"). */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import { Meter } from '../../src/workspace-db/metrics';
import { api } from '../helpers';
import { call, signedInUser, type SignedIn } from '../auth/helpers';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { message, op, openSocket, pull, push, pushOk, syncUser, type TestSocket } from '../sync/helpers';

const connect = async (workspaceId: string, user: { headers: Record<string, string> }, deviceId: string) => {
  const socket = await openSocket(
    await api(`/api/sync/ws?workspaceId=${workspaceId}&deviceId=${deviceId}`, { headers: { upgrade: 'websocket', ...user.headers } }),
  );
  await socket.next((m) => m.type === 'hello', 'hello');
  return socket;
};

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

  it('rolls the hourly and daily buckets up across workspaces for the charts (series)', async () => {
    const [a, b] = [await syncUser(), await syncUser()];
    const read = async () => (await call('GET', '/api/admin/metrics/series', root.headers)).json<any>();
    const hourNow = new Date(Math.floor(Date.now() / 3600_000) * 3600_000).toISOString();
    const before = (await read()).hours[hourNow]?.ops_pushed ?? 0;
    await pushOk(a, a.workspaceId, [op('messages', 'm1', message('m1'))]);
    await pushOk(b, b.workspaceId, [op('messages', 'm1', message('m1')), op('messages', 'm2', message('m2'))]);
    const after = await read();
    expect(after.hours[hourNow].ops_pushed - before).toBe(3);
    expect(Object.keys(after.days)).toEqual([...Object.keys(after.days)].sort());
    expect(after.workspacesCounted).toBeGreaterThanOrEqual(2);
    expect((await call('GET', '/api/admin/metrics/series', a.headers)).status).toBe(403);
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

describe('socket and presence peaks', () => {
  it('keep the most sockets open at once and the largest roster, per hour and day, in JSON and Prometheus', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, owner.workspaceId, member.id, 'editor');
    const sockets: TestSocket[] = [];
    for (const [user, device] of [
      [owner, 'a'],
      [owner, 'b'],
      [member, 'c'],
    ] as const)
      sockets.push(await connect(owner.workspaceId, user, device));
    sockets[0]!.send({ type: 'presence', state: { here: true } });
    sockets[2]!.send({ type: 'presence', state: { here: true } });
    await sockets[0]!.next((m) => m.type === 'presence' && m.deviceId === 'c', "c's presence");
    // Leaving lowers the level, not the peak.
    sockets[1]!.ws.close();
    sockets[2]!.ws.close();
    await connect(owner.workspaceId, member, 'd').then((s) => sockets.push(s));

    const res = await call('GET', `/api/admin/metrics/workspaces/${owner.workspaceId}`, root.headers);
    const body = await res.json<any>();
    expect(Object.values(body.hours)).toEqual([expect.objectContaining({ peak_sockets: 3, peak_presence: 2 })]);
    expect(Object.values(body.days)).toEqual([expect.objectContaining({ peak_sockets: 3, peak_presence: 2 })]);
    // Deployment-wide: the busiest single workspace (a maximum, never a sum of peaks).
    const flat = await metrics();
    expect(flat.or3_sync_peak_sockets_today).toBeGreaterThanOrEqual(3);
    const text = await (await call('GET', '/api/admin/metrics', { ...root.headers, accept: 'text/plain' })).text();
    expect(parsePrometheus(text).get('or3_sync_peak_presence_today')).toBe(flat.or3_sync_peak_presence_today);
    expect(text).toContain('# HELP or3_sync_peak_sockets_today Most sockets open at once in any one workspace');
    for (const s of sockets) s.ws.close();
  });
});

describe('GET /api/admin/workspaces/:id', () => {
  it('shows members and roles, pending invites with their email (never a token), usage, GC/archive state and counters', async () => {
    const owner = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, owner.workspaceId, member.id, 'viewer');
    await pushOk(owner, owner.workspaceId, [op('messages', 'm1', message('m1'))]);
    const made = await call('POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.headers, { role: 'editor', email: 'Someone@Example.com' });
    const { inviteToken } = await made.json<{ inviteToken: string }>();
    const res = await call('GET', `/api/admin/workspaces/${owner.workspaceId}`, root.headers);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(inviteToken);
    const body = JSON.parse(text);
    expect(body.workspace).toMatchObject({ id: owner.workspaceId, deletedAt: null });
    expect(body.members).toEqual([
      expect.objectContaining({ userId: owner.id, role: 'owner' }),
      expect.objectContaining({ userId: member.id, role: 'viewer', email: member.email }),
    ]);
    expect(body.invites).toEqual([expect.objectContaining({ role: 'editor', email: 'someone@example.com', createdBy: owner.id })]);
    expect(body.state).toMatchObject({ headVersion: 1, archivedThrough: 0, tombstonesCollectedThrough: 0, socketsOpen: 0, blobCount: 0 });
    expect(body.state.syncBytes).toBeGreaterThan(0);
    expect(body.state.nextGcAt === null || !Number.isNaN(Date.parse(body.state.nextGcAt))).toBe(true);
    expect(Object.values(body.metrics.days)).toEqual([expect.objectContaining({ ops_pushed: 1 })]);

    expect((await call('GET', `/api/admin/workspaces/${crypto.randomUUID()}`, root.headers)).status).toBe(404);
    expect((await call('GET', `/api/admin/workspaces/${owner.workspaceId}`, owner.headers)).status).toBe(403);
    expect((await call('GET', `/api/admin/workspaces/${'x'.repeat(300)}`, root.headers)).status).toBe(400);
  });

  it('exports a workspace the admin is not a member of (JSONL, audited); others 403, unknown 404', async () => {
    const owner = await syncUser();
    await pushOk(owner, owner.workspaceId, [op('messages', 'm1', message('m1'))]);
    const res = await call('GET', `/api/admin/workspaces/${owner.workspaceId}/export`, root.headers);
    expect(res.status).toBe(200);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ type: 'header', workspaceId: owner.workspaceId, exportedBy: root.id });
    expect(lines.filter((l) => l.type === 'change').map((l) => l.pk)).toEqual(['m1']);
    expect((await call('GET', `/api/admin/workspaces/${owner.workspaceId}/export`, owner.headers)).status).toBe(403);
    expect((await call('GET', `/api/admin/workspaces/${crypto.randomUUID()}/export`, root.headers)).status).toBe(404);
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

  it('keeps the maximum of a peak, never its sum', async () => {
    const u = await syncUser();
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_instance, state) => {
      const meter = new Meter(state.storage);
      const t = Date.UTC(2026, 0, 2, 10);
      meter.peak('peak_sockets', 4, t);
      meter.peak('peak_sockets', 2, t);
      meter.flush(t);
      meter.peak('peak_sockets', 3, t + 60_000);
      meter.peak('not_a_peak', 9, t + 60_000);
      const reading = meter.read(t + 60_000);
      expect(reading.hours[new Date(t).toISOString()]).toEqual({ peak_sockets: 4 });
    });
  });
});
