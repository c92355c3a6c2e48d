/** Restore/fork: replaying a workspace's history (archive + live log) into a fresh object. */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, signedInUser } from '../auth/helpers';
import { message, op, pushOk, snapshotAll, syncUser, thread } from '../sync/helpers';

const fork = (admin: { headers: Record<string, string> }, id: string, body: unknown = {}) =>
  call('POST', `/api/admin/workspaces/${id}/fork`, { ...admin.headers, 'x-or3-admin-intent': 'admin' }, body);

describe('POST /api/admin/workspaces/:id/fork', () => {
  it('rebuilds the rows as they were at a version, reading both the archive and the live log', async () => {
    const u = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    const hash = 'sha256:' + 'f'.repeat(64);
    await pushOk(u, u.workspaceId, [
      op('threads', 't1', thread('t1')),
      op('messages', 'm1', message('m1', { data: 'v1', file_hashes: JSON.stringify([hash]) })),
      op('file_meta', hash, { hash, deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
    ]);
    const atThree = (await snapshotAll(u, u.workspaceId, 100)).items;
    // Archive versions 1..3 through GC, then keep writing.
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      state.storage.sql.exec('UPDATE change_log SET created_at = created_at - 7200000'),
    );
    await call('POST', '/api/sync/gc-change-log', u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 });
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { data: 'v2' }), { clock: 2 }),
      op('threads', 't1', undefined, { operation: 'delete', clock: 2 }),
      op('messages', 'm2', message('m2')),
    ]);

    const past = await fork(admin, u.workspaceId, { untilVersion: 3, name: 'Restored' });
    expect(past.status).toBe(200);
    const pastBody = await past.json<{ id: string; imported: number; serverVersion: number }>();
    expect(pastBody).toMatchObject({ imported: 3, serverVersion: 3 });
    expect((await snapshotAll(admin, pastBody.id, 100)).items).toEqual(atThree);

    const now = await (await fork(admin, u.workspaceId)).json<{ id: string; imported: number }>();
    expect(now.imported).toBe(6);
    expect((await snapshotAll(admin, now.id, 100)).items).toEqual((await snapshotAll(u, u.workspaceId, 100)).items);
    const list = await (await call('GET', '/api/workspaces', admin.headers)).json<any>();
    expect(list.workspaces.map((w: any) => w.name)).toContain('Restored');
  });

  it('is for deployment admins with the intent header only, and validates its input', async () => {
    const u = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    expect((await fork(u, u.workspaceId)).status).toBe(403);
    expect((await call('POST', `/api/admin/workspaces/${u.workspaceId}/fork`, admin.headers, {})).status).toBe(403);
    expect((await fork(admin, crypto.randomUUID())).status).toBe(404);
    expect((await fork(admin, u.workspaceId, { untilVersion: 1, untilTime: 5 })).status).toBe(400);
    expect((await fork(admin, u.workspaceId, { untilTime: 'yesterday' })).status).toBe(400);
  });

  it('forks a workspace whose payloads are nested as deep as allowed', async () => {
    const u = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    let data: unknown = { leaf: 'bottom' };
    for (let i = 2; i < 64; i++) data = { down: data };
    await pushOk(u, u.workspaceId, [op('messages', 'deep', message('deep', { data })), op('threads', 't1', thread('t1'))]);
    const res = await fork(admin, u.workspaceId);
    expect(res.status).toBe(200);
    const { id } = await res.json<{ id: string }>();
    expect((await snapshotAll(admin, id, 100)).items).toEqual((await snapshotAll(u, u.workspaceId, 100)).items);
  });

  it('forks a payload stored 2,000 levels deep before nesting was bounded (canonicalised without recursion)', async () => {
    const u = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    const deep = '{"a":'.repeat(2_000) + '1' + '}'.repeat(2_000);
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      state.storage.sql.exec("UPDATE change_log SET payload = ? WHERE pk = 'm1'", deep),
    );
    const res = await fork(admin, u.workspaceId);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ imported: 1 });
  });

  it('a fork that fails leaves no half-made workspace behind', async () => {
    const u = await syncUser();
    const admin = await signedInUser({ isAdmin: true });
    await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1')), op('messages', 'm1', message('m1'))]);
    // A history entry that cannot be read back (damaged storage): the replay stops midway.
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) =>
      state.storage.sql.exec("UPDATE change_log SET payload = '{not json' WHERE pk = 'm1'"),
    );
    const before = await env.DB.prepare('SELECT count(*) AS n FROM workspaces').first<{ n: number }>();
    const res = await fork(admin, u.workspaceId, { name: 'Doomed fork' });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: 'fork_failed' });
    expect(await env.DB.prepare('SELECT count(*) AS n FROM workspaces').first<{ n: number }>()).toEqual(before);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM workspaces WHERE name = 'Doomed fork'").first<{ n: number }>()).toEqual({ n: 0 });
    const list = await (await call('GET', '/api/workspaces', admin.headers)).json<any>();
    expect(list.workspaces.map((w: any) => w.name)).not.toContain('Doomed fork');
  });
});
