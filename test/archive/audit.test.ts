/** The persisted audit log (R2 batches + day manifests via AuditLogDO) and the PITR admin route. */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { LEGACY_AUDIT_OBJECT as AUDIT_OBJECT_NAME } from '../../src/audit/emit';
import { auditManifestKey, type AuditRecord } from '../../src/audit/log';
import { parseJsonl, utcDate, type ManifestEntry } from '../../src/r2-jsonl';
import { markRestored } from '../../src/workspace-db/recovery';
import { apiWithEnv } from '../helpers';
import { call, makeUser, PASSWORD, randomIp, signedInUser, type SignedIn } from '../auth/helpers';
import { message, op, pull, pushOk, snapshotAll, syncUser } from '../sync/helpers';

const auditObject = () => env.AUDIT.getByName(AUDIT_OBJECT_NAME);
const intent = (s: { headers: Record<string, string> }) => ({ ...s.headers, 'x-or3-admin-intent': 'admin' });

async function readAudit(admin: SignedIn, query = '') {
  const res = await call('GET', `/api/admin/audit${query}`, admin.headers);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { from: string; to: string; events: AuditRecord[]; truncated: boolean };
}

/** Audit writes run after the response; poll the read-back until `match` shows up. */
async function eventually(admin: SignedIn, match: (e: AuditRecord) => boolean, query = '') {
  for (let i = 0; i < 50; i++) {
    const found = (await readAudit(admin, query)).events.filter(match);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('audit event never arrived');
}

const signIn = (email: string, password: string) => call('POST', '/api/basic-auth/sign-in', { 'cf-connecting-ip': randomIp() }, { email, password });

describe('audit log shards', () => {
  it('concurrent sign-ins and workspace events from many workspaces all land, in order per source, with no global object on the path', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const names: string[] = [];
    const recording = { getByName: (name: string) => (names.push(name), env.AUDIT.getByName(name)) };
    const vars = { AUDIT: recording };
    const users = await Promise.all(Array.from({ length: 6 }, () => makeUser()));
    const owners = await Promise.all(Array.from({ length: 4 }, () => syncUser()));
    const gc = (u: { headers: Record<string, string>; workspaceId: string }) =>
      apiWithEnv(vars, '/api/sync/gc-tombstones', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 + 0 }),
      });
    await Promise.all([
      ...users.map((u) =>
        apiWithEnv(vars, '/api/basic-auth/sign-in', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
          body: JSON.stringify({ email: u.email, password: PASSWORD }),
        }),
      ),
      // Each workspace's GC runs one after another: their events must come back in that order.
      ...owners.map(async (o) => {
        for (let i = 0; i < 3; i++) expect((await gc(o)).status).toBe(200);
      }),
    ]);
    expect(names).not.toContain(AUDIT_OBJECT_NAME);
    expect(new Set(names).size).toBeGreaterThan(1);
    for (const u of users) await eventually(admin, (e) => e.event === 'auth.sign_in.success' && e.email === u.email);
    const events = (await readAudit(admin)).events;
    for (const o of owners) {
      const runs = events.filter((e) => e.event === 'sync.gc.run' && e.workspaceId === o.workspaceId);
      expect(runs).toHaveLength(3);
      // One source, one shard: its events keep their recording order.
      expect(runs.map((e) => e.seq)).toEqual([...runs.map((e) => e.seq)].sort((a, b) => a - b));
    }
  });
});

describe('audit log persistence', () => {
  it('persists sign-in success and failure and reads them back, with no secrets in the record', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const { email } = await makeUser();
    expect((await signIn(email, 'wrong password entirely')).status).toBe(401);
    expect((await signIn(email, PASSWORD)).status).toBe(200);
    const found = await eventually(admin, (e) => e.email === email && e.event === 'auth.sign_in.success');
    const all = (await readAudit(admin)).events.filter((e) => e.email === email);
    expect(all.map((e) => e.event)).toEqual(['auth.sign_in.failure', 'auth.sign_in.success']);
    expect(found[0]).toMatchObject({ seq: expect.any(Number), at: expect.any(String), requestId: expect.any(String) });
    expect(JSON.stringify(all)).not.toContain(PASSWORD);
    expect(JSON.stringify(all)).not.toContain('wrong password entirely');
  });

  it('writes each shard’s batches under audit/v1/date=…/shard=…, listed exactly once in its day manifest', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const tag = crypto.randomUUID();
    const shard = 'audit-3';
    await env.AUDIT.getByName(shard).append([{ at: new Date().toISOString(), event: 'auth.register', email: `${tag}@example.com` }]);
    await env.AUDIT.getByName(shard).flush();
    await env.AUDIT.getByName(shard).flush(); // nothing pending: no new batch, no duplicate manifest line
    const date = utcDate(Date.now());
    const manifest = parseJsonl<ManifestEntry>(await (await env.BLOBS.get(auditManifestKey(date, shard)))!.text());
    expect(new Set(manifest.map((m) => m.key)).size).toBe(manifest.length);
    const listed = (await env.BLOBS.list({ prefix: `audit/v1/date=${date}/shard=${shard}/` })).objects.map((o) => o.key).sort();
    expect(manifest.map((m) => m.key).sort()).toEqual(listed);
    for (const m of manifest) expect(m.key).toMatch(new RegExp(`^audit/v1/date=${date}/shard=${shard}/seq=${m.first}-${m.last}\\.jsonl$`));
    const events = (await readAudit(admin)).events.filter((e) => e.email === `${tag}@example.com`);
    expect(events).toHaveLength(1);
    // The single object of earlier releases keeps its layout, and is read back with the shards.
    await auditObject().append([{ at: new Date().toISOString(), event: 'auth.register', email: `legacy-${tag}@example.com` }]);
    await auditObject().flush();
    const legacy = parseJsonl<ManifestEntry>(await (await env.BLOBS.get(auditManifestKey(date)))!.text());
    expect(legacy.every((m) => new RegExp(`^audit/v1/date=${date}/seq=\\d+-\\d+\\.jsonl$`).test(m.key))).toBe(true);
    expect((await readAudit(admin)).events.filter((e) => e.email === `legacy-${tag}@example.com`)).toHaveLength(1);
  });

  it('filters by UTC date range and splits one flush into one batch per day', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const tag = crypto.randomUUID();
    const days = ['2026-03-01', '2026-03-02', '2026-03-04'];
    await auditObject().append(days.map((d) => ({ at: `${d}T12:00:00.000Z`, event: 'admin.admin.granted', targetUserId: `${tag}-${d}` })));
    const mine = (r: { events: AuditRecord[] }) => r.events.filter((e) => String(e.targetUserId).startsWith(tag)).map((e) => e.at.slice(0, 10));
    expect(mine(await readAudit(admin, '?from=2026-03-01&to=2026-03-02'))).toEqual(['2026-03-01', '2026-03-02']);
    expect(mine(await readAudit(admin, '?from=2026-03-03&to=2026-03-04'))).toEqual(['2026-03-04']);
    expect(mine(await readAudit(admin, '?from=2026-03-03&to=2026-03-03'))).toEqual([]);
    const keys = (await env.BLOBS.list({ prefix: 'audit/v1/date=2026-03-0' })).objects.map((o) => o.key);
    expect(new Set(keys.map((k) => k.split('/')[2])).size).toBe(3);
    // limit truncates and says so
    const limited = await readAudit(admin, '?from=2026-03-01&to=2026-03-04&limit=1');
    expect(limited.events).toHaveLength(1);
    expect(limited.truncated).toBe(true);
  });

  it('filters by actor, event (or family) and workspace, and pages with offset; hostile filters are 400', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const tag = crypto.randomUUID();
    const at = (h: number) => `2026-04-01T${String(h).padStart(2, '0')}:00:00.000Z`;
    await auditObject().append([
      { at: at(1), event: 'admin.user.disabled', actorId: `${tag}-a`, targetUserId: 'u1' },
      { at: at(2), event: 'admin.member.removed', actorId: `${tag}-a`, workspaceId: `${tag}-w` },
      { at: at(3), event: 'auth.sign_in', actorId: `${tag}-b` },
      { at: at(4), event: 'admin.user.enabled', actorId: `${tag}-a`, targetUserId: 'u1' },
      { at: at(5), event: 'admin.user.disabled', actorId: `${tag}-b`, workspaceId: `${tag}-w` },
    ]);
    const q = (extra: string) => readAudit(admin, `?from=2026-04-01&to=2026-04-01&${extra}`);
    const hours = (r: { events: AuditRecord[] }) => r.events.map((e) => Number(e.at.slice(11, 13)));
    expect(hours(await q(`actor=${tag}-a`))).toEqual([1, 2, 4]);
    expect(hours(await q(`actor=${tag}-a&event=admin.user.disabled`))).toEqual([1]);
    expect(hours(await q(`actor=${tag}-a&event=admin.user.*`))).toEqual([1, 4]);
    expect(hours(await q(`workspace=${tag}-w`))).toEqual([2, 5]);
    const first = await q(`actor=${tag}-a&limit=2`);
    expect(hours(first)).toEqual([1, 2]);
    expect(first).toMatchObject({ truncated: true, nextOffset: 2 });
    const second = await q(`actor=${tag}-a&limit=2&offset=2`);
    expect(hours(second)).toEqual([4]);
    expect(second).toMatchObject({ truncated: false, nextOffset: null });
    for (const bad of ["event=x'%20OR%201=1", 'event=<script>', `actor=${'a'.repeat(129)}`, 'offset=-1', 'offset=10001', 'workspace=']) {
      expect((await call('GET', `/api/admin/audit?${bad}`, admin.headers)).status, bad).toBe(400);
    }
  });

  it('keeps events pending when R2 fails and writes them once on the retry', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const tag = crypto.randomUUID();
    await auditObject().append([{ at: new Date().toISOString(), event: 'auth.register', email: `${tag}@example.com` }]);
    const broken = { put: async () => Promise.reject(new Error('R2 unavailable')), get: async () => null } as unknown as R2Bucket;
    await runInDurableObject(auditObject(), async (instance) => {
      await expect(instance.flush(broken)).rejects.toThrow('R2 unavailable');
      expect(instance.pendingCount()).toBeGreaterThan(0);
    });
    const events = (await readAudit(admin)).events.filter((e) => e.email === `${tag}@example.com`);
    expect(events).toHaveLength(1);
    expect(await runInDurableObject(auditObject(), (instance) => instance.pendingCount())).toBe(0);
  });

  it('records admin mutations and permission denials', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const u = await syncUser();
    const outsider = await signedInUser();
    expect((await call('POST', '/api/sync/pull', outsider.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(403);
    expect((await call('PUT', `/api/admin/users/${outsider.id}/admin`, intent(admin))).status).toBe(200);
    const denied = await eventually(admin, (e) => e.event === 'workspace.permission_denied' && e.actorId === outsider.id);
    expect(denied[0]).toMatchObject({ workspaceId: u.workspaceId, reason: 'not_member' });
    // Repeated denials of the same thing are persisted once a minute, not once each.
    for (let i = 0; i < 5; i++)
      expect((await call('POST', '/api/sync/pull', outsider.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(403);
    await auditObject().flush();
    expect((await readAudit(admin)).events.filter((e) => e.event === 'workspace.permission_denied' && e.actorId === outsider.id)).toHaveLength(1);
    const granted = await eventually(admin, (e) => e.event === 'admin.admin.granted' && e.targetUserId === outsider.id);
    expect(granted[0]).toMatchObject({ actorId: admin.id });
  });

  it('is for deployment admins only, and rejects bad ranges with 400', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const member = await signedInUser();
    expect((await call('GET', '/api/admin/audit', member.headers)).status).toBe(403);
    expect((await call('GET', '/api/admin/audit', {})).status).toBe(401);
    for (const query of [
      '?from=2026-03-05&to=2026-03-01',
      '?from=2026-01-01&to=2026-03-01',
      '?from=2026-02-30',
      '?from=yesterday',
      '?limit=0',
      '?limit=99999',
      '?bogus=1',
    ]) {
      const res = await call('GET', `/api/admin/audit${query}`, admin.headers);
      expect(res.status, query).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'invalid_query' });
    }
  });
});

describe('point-in-time restore marker', () => {
  it('keeps every restore’s range: a device offline since the first one is still caught after a second', async () => {
    const u = await syncUser();
    const ws = u.workspaceId;
    await pushOk(u, ws, [op('messages', 'a', message('a'))]); // head 1
    const stub = env.WORKSPACE.getByName(ws);
    await runInDurableObject(stub, (_i, state) => state.storage.transactionSync(() => markRestored(state.storage.sql, 4))); // (1, 4], head 5
    await pushOk(u, ws, [op('messages', 'b', message('b')), op('messages', 'c', message('c'))]); // 6, 7
    await runInDurableObject(stub, (_i, state) => state.storage.transactionSync(() => markRestored(state.storage.sql, 9))); // (7, 9], head 10
    for (const cursor of [2, 4, 8, 9]) expect((await pull(u, ws, cursor)).requiresSnapshot, `cursor ${cursor}`).toBe(true);
    for (const cursor of [1, 5, 7, 10]) expect((await pull(u, ws, cursor)).requiresSnapshot, `cursor ${cursor}`).toBe(false);
  });
});

describe('point-in-time restore route', () => {
  const path = (ws: string) => `/api/admin/workspaces/${ws}/point-in-time-restore`;
  const hourAgo = () => new Date(Date.now() - 3600_000).toISOString();

  it('is guarded: admin + intent, confirm must repeat the id, time within 30 days, production only', async () => {
    const admin = await signedInUser({ isAdmin: true });
    const u = await syncUser();
    const ws = u.workspaceId;
    expect((await call('POST', path(ws), u.headers, { at: hourAgo(), confirm: ws })).status).toBe(403);
    expect((await call('POST', path(ws), admin.headers, { at: hourAgo(), confirm: ws })).status).toBe(403);
    const bad: [unknown, string][] = [
      [{ at: hourAgo(), confirm: 'other' }, 'confirm_mismatch'],
      [{ at: new Date(Date.now() + 60_000).toISOString(), confirm: ws }, 'invalid_time'],
      [{ at: Date.now() - 31 * 86_400_000, confirm: ws }, 'invalid_time'],
      [{ at: 'last tuesday', confirm: ws }, 'invalid_body'],
      [{ at: hourAgo() }, 'invalid_body'],
    ];
    for (const [body, code] of bad) {
      const res = await call('POST', path(ws), intent(admin), body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toMatchObject({ error: code });
    }
    expect((await call('POST', path('no-such-workspace'), intent(admin), { at: hourAgo(), confirm: 'no-such-workspace' })).status).toBe(404);
    // Local dev must never rewind anything.
    const dev = await apiWithEnv({ ENVIRONMENT: 'development' }, path(ws), {
      method: 'POST',
      headers: { ...intent(admin), 'content-type': 'application/json' },
      body: JSON.stringify({ at: hourAgo(), confirm: ws }),
    });
    expect(dev.status).toBe(409);
    expect(await dev.json()).toMatchObject({ error: 'pitr_unavailable' });
    // Local workerd has no bookmarks: a clear 501, and the workspace is untouched.
    const before = await pull(u, ws, 0);
    const res = await call('POST', path(ws), intent(admin), { at: hourAgo(), confirm: ws });
    expect(res.status).toBe(501);
    expect(await res.json()).toMatchObject({ error: 'pitr_unsupported' });
    expect(await pull(u, ws, 0)).toEqual(before);
  });

  it('after a restore, clients that saw discarded versions re-snapshot and new versions never reuse a number', async () => {
    const u = await syncUser();
    const ws = u.workspaceId;
    await pushOk(u, ws, [op('messages', 'a', message('a')), op('messages', 'b', message('b'))]);
    // Simulate the restored database: the head is back at 2 while clients saw up to 5.
    const stub = env.WORKSPACE.getByName(ws);
    const finished = await runInDurableObject(stub, (_i, state) => state.storage.transactionSync(() => markRestored(state.storage.sql, 5)));
    expect(finished).toEqual({ restoredHead: 2, serverVersion: 6 });
    expect(await stub.pitrFinish(5)).toEqual({ ok: true, restoredHead: 6, serverVersion: 6 }); // idempotent
    for (const cursor of [3, 5]) expect((await pull(u, ws, cursor)).requiresSnapshot, `cursor ${cursor}`).toBe(true);
    expect((await pull(u, ws, 6)).requiresSnapshot).toBe(false);
    const pushed = await pushOk(u, ws, [op('messages', 'c', message('c'))]);
    expect(pushed.results[0]!.serverVersion).toBe(7);
    // A cursor below the restored head saw nothing discarded: it pulls across the gap.
    const fromOne = await pull(u, ws, 1);
    expect(fromOne.requiresSnapshot).toBe(false);
    expect(fromOne.changes.map((c: { serverVersion: number }) => c.serverVersion)).toEqual([2, 7]);
    // The snapshot's watermark is above the discarded range, so a bootstrapped client pulls on.
    const snap = await snapshotAll(u, ws, 100);
    expect(snap.highWatermark).toBeGreaterThanOrEqual(7);
    expect((await pull(u, ws, snap.highWatermark)).requiresSnapshot).toBe(false);
    // A cursor beyond anything the workspace has (a restore not finished yet) re-bootstraps too.
    expect((await pull(u, ws, 99)).requiresSnapshot).toBe(true);
    // GC's binary search copes with the gap: age everything and collect it all.
    await runInDurableObject(stub, (_i, state) => state.storage.sql.exec('UPDATE change_log SET created_at = created_at - 7200000'));
    await call('POST', '/api/sync/update-cursor', u.headers, { scope: { workspaceId: ws }, deviceId: 'dev-a', version: 7 });
    const gc = await call('POST', '/api/sync/gc-change-log', u.headers, { scope: { workspaceId: ws }, retentionSeconds: 3600 });
    expect(await gc.json()).toEqual({ deletedCount: 3 });
  });
});
