/** API.md Sync semantics, read side: pull paging, snapshots, cursors, isolation, roles. */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, signedInUser } from '../auth/helpers';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { message, op, pull, push, pushOk, snapshotAll, syncUser, thread } from './helpers';

async function seed(u: { headers: Record<string, string>; workspaceId: string }, n: number) {
  await pushOk(
    u,
    u.workspaceId,
    Array.from({ length: n }, (_, i) => op('messages', `m${String(i).padStart(3, '0')}`, message(`m${String(i).padStart(3, '0')}`))),
  );
}

describe('pull', () => {
  it('pages ascending by version: nextCursor is the last version returned, hasMore until the end', async () => {
    const u = await syncUser();
    await seed(u, 7);
    const seen: number[] = [];
    let cursor = 0;
    for (;;) {
      const page = await pull(u, u.workspaceId, cursor, { limit: 3 });
      seen.push(...page.changes.map((c) => c.serverVersion));
      if (page.changes.length) expect(page.nextCursor).toBe(page.changes.at(-1).serverVersion);
      if (page.hasMore) expect(page.nextCursor).toBeGreaterThan(cursor);
      expect(page).toMatchObject({ oldestRetainedVersion: 1, requiresSnapshot: false });
      if (!page.hasMore) break;
      cursor = page.nextCursor;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const empty = await pull(u, u.workspaceId, 7);
    expect(empty).toMatchObject({ changes: [], nextCursor: 7, hasMore: false });
  });

  it('returns SyncChange objects with stamps, and filters by table', async () => {
    const u = await syncUser();
    const t = op('threads', 't1', thread('t1'), { deviceId: 'laptop', clock: 2 });
    await pushOk(u, u.workspaceId, [t, op('messages', 'm1', message('m1')), op('messages', 'm1', undefined, { operation: 'delete', clock: 5 })]);
    const all = await pull(u, u.workspaceId, 0);
    expect(all.changes[0]).toEqual({
      serverVersion: 1,
      tableName: 'threads',
      pk: 't1',
      op: 'put',
      payload: t.payload,
      stamp: { deviceId: 'laptop', opId: t.stamp.opId, hlc: t.stamp.hlc, clock: 2 },
    });
    // m1's put was superseded by its delete: one change for the key, the tombstone, at v3.
    expect(all.changes).toHaveLength(2);
    expect(all.changes[1]).not.toHaveProperty('payload');
    expect(all.changes[1]).toMatchObject({ serverVersion: 3, pk: 'm1', op: 'delete' });
    const messagesOnly = await pull(u, u.workspaceId, 0, { tables: ['messages'] });
    expect(messagesOnly.changes.map((c) => c.serverVersion)).toEqual([3]);
  });

  it.each([
    [{ cursor: -1 }, 'cursor'],
    [{ cursor: 0, limit: 0 }, 'limit'],
    [{ cursor: 0, limit: 1001 }, 'limit'],
    [{ cursor: 0, tables: ['secrets'] }, 'tables'],
    [{ cursor: 0, tables: Array(51).fill('messages') }, 'tables'],
    [{ cursor: 1.5 }, 'cursor'],
  ])('rejects %j with 400', async (body, field) => {
    const u = await syncUser();
    const res = await call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: u.workspaceId }, ...body });
    expect(res.status).toBe(400);
    expect((await res.json<{ message: string }>()).message).toContain(field);
  });
});

describe('notifications belong to their user', () => {
  it("forces user_id to the caller, hides other users' notifications, and refuses touching them", async () => {
    const owner = await syncUser();
    const other = await signedInUser();
    const { upsertMember: add } = await import('../../src/workspace-records/member-writes');
    await add(env, owner.workspaceId, other.id, 'editor');
    const note = { id: 'n1', user_id: 'someone-else', type: 'info', title: 'Hi', deleted: false, created_at: 1, updated_at: 1, clock: 1 };
    await pushOk(owner, owner.workspaceId, [op('notifications', 'n1', note)]);
    const mine = await pull(owner, owner.workspaceId, 0);
    expect(mine.changes[0].payload.user_id).toBe(owner.id);
    expect((await pull(other, owner.workspaceId, 0)).changes).toEqual([]);
    expect((await snapshotAll(other, owner.workspaceId)).items).toEqual([]);
    const attempt = await pushOk(other, owner.workspaceId, [
      op('notifications', 'n1', undefined, { operation: 'delete', clock: 9 }),
      op('notifications', 'n1', { ...note, clock: 9 }, { clock: 9 }),
    ]);
    expect(attempt.results.map((r) => r.errorCode)).toEqual(['UNAUTHORIZED', 'UNAUTHORIZED']);
    expect((await snapshotAll(owner, owner.workspaceId)).items[0]).toMatchObject({ kind: 'row', pk: 'n1' });
  });
});

describe('snapshot', () => {
  it('pages rows and tombstones in (tableName, pk) order under one snapshotId and highWatermark', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [
      op('threads', 't2', thread('t2')),
      op('messages', 'm2', message('m2')),
      op('messages', 'm1', message('m1')),
      op('threads', 't1', thread('t1')),
    ]);
    await pushOk(u, u.workspaceId, [op('messages', 'm2', undefined, { operation: 'delete', clock: 2 })]);
    const snap = await snapshotAll(u, u.workspaceId, 1);
    expect(snap.highWatermark).toBe(5);
    expect(snap.items.map((i) => [i.tableName, i.pk, i.kind])).toEqual([
      ['messages', 'm1', 'row'],
      ['messages', 'm2', 'tombstone'],
      ['threads', 't1', 'row'],
      ['threads', 't2', 'row'],
    ]);
  });

  it('snapshot + pull from the watermark reproduces the live rows, even with writes during paging', async () => {
    const u = await syncUser();
    await seed(u, 5);
    const first = await call('POST', '/api/sync/snapshot', u.headers, { scope: { workspaceId: u.workspaceId }, pageSize: 2 });
    const page1 = await first.json<any>();
    // Writes land between pages.
    await pushOk(u, u.workspaceId, [
      op('messages', 'm000', undefined, { operation: 'delete', clock: 2 }),
      op('messages', 'm999', message('m999')),
      op('messages', 'm004', message('m004', { data: 'edited' }), { clock: 2 }),
    ]);
    const items = [...page1.items];
    let token = page1.nextPageToken;
    while (token) {
      const page = await (
        await call('POST', '/api/sync/snapshot', u.headers, { scope: { workspaceId: u.workspaceId }, pageSize: 2, pageToken: token })
      ).json<any>();
      expect(page.snapshotId).toBe(page1.snapshotId);
      items.push(...page.items);
      token = page.nextPageToken;
    }
    const state = new Map<string, any>();
    for (const i of items) state.set(i.pk, i.kind === 'row' ? i.payload : null);
    const { changes } = await pull(u, u.workspaceId, page1.highWatermark);
    for (const c of changes) state.set(c.pk, c.op === 'put' ? c.payload : null);
    const live = [...state]
      .filter(([, v]) => v)
      .map(([pk, v]) => [pk, v.data])
      .sort();
    const server = (await snapshotAll(u, u.workspaceId, 100)).items
      .filter((i) => i.kind === 'row')
      .map((i) => [i.pk, i.payload.data])
      .sort();
    expect(live).toEqual(server);
    expect(live).toContainEqual(['m004', 'edited']);
    expect(live.map(([pk]) => pk)).not.toContain('m000');
  });

  it('refuses a tampered page token (400) and an expired one (410)', async () => {
    const u = await syncUser();
    await seed(u, 3);
    const page = await (await call('POST', '/api/sync/snapshot', u.headers, { scope: { workspaceId: u.workspaceId }, pageSize: 1 })).json<any>();
    const [body, mac] = page.nextPageToken.split('.');
    const tampered = await call('POST', '/api/sync/snapshot', u.headers, { scope: { workspaceId: u.workspaceId }, pageToken: `${body}x.${mac}` });
    expect(tampered.status).toBe(400);
    const other = await syncUser();
    const foreign = await call('POST', '/api/sync/snapshot', other.headers, { scope: { workspaceId: other.workspaceId }, pageToken: page.nextPageToken });
    expect(foreign.status).toBe(400);
    // Expire it: sign a token whose expiry has passed with the workspace's own key.
    const { signPageToken } = await import('../../src/workspace-db/page-token');
    const key = await runInDurableObject(
      env.WORKSPACE.getByName(u.workspaceId),
      (_i, state) => state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'snapshot_key'").one().value,
    );
    const expired = await signPageToken(key, {
      snapshotId: page.snapshotId,
      highWatermark: page.highWatermark,
      after: ['messages', 'm000'],
      expiresAt: Date.now() - 1,
    });
    const res = await call('POST', '/api/sync/snapshot', u.headers, { scope: { workspaceId: u.workspaceId }, pageToken: expired });
    expect(res.status).toBe(410);
  });
});

describe('update-cursor', () => {
  const cursor = (u: { headers: Record<string, string> }, workspaceId: string, deviceId: string, version: number) =>
    call('POST', '/api/sync/update-cursor', u.headers, { scope: { workspaceId }, deviceId, version });

  it('moves forward only: equal is fine, a regress is 409, beyond the head is 400', async () => {
    const u = await syncUser();
    await seed(u, 3);
    expect((await cursor(u, u.workspaceId, 'd1', 2)).status).toBe(200);
    expect((await cursor(u, u.workspaceId, 'd1', 2)).status).toBe(200);
    expect((await cursor(u, u.workspaceId, 'd1', 3)).status).toBe(200);
    expect((await cursor(u, u.workspaceId, 'd1', 1)).status).toBe(409);
    expect((await cursor(u, u.workspaceId, 'd1', 4)).status).toBe(400);
  });

  it('a device id owned by another user is 403', async () => {
    const u = await syncUser();
    const other = await signedInUser();
    await upsertMember(env, u.workspaceId, other.id, 'viewer');
    await seed(u, 1);
    expect((await cursor(u, u.workspaceId, 'shared-device', 1)).status).toBe(200);
    expect((await cursor(other, u.workspaceId, 'shared-device', 1)).status).toBe(403);
  });
});

describe('roles and isolation', () => {
  it('a viewer reads but cannot push; a non-member can do neither', async () => {
    const u = await syncUser();
    const viewer = await signedInUser();
    const stranger = await signedInUser();
    await upsertMember(env, u.workspaceId, viewer.id, 'viewer');
    await seed(u, 1);
    expect((await push(viewer, u.workspaceId, [op('messages', 'v1', message('v1'))])).status).toBe(403);
    expect((await pull(viewer, u.workspaceId, 0)).changes).toHaveLength(1);
    expect((await push(stranger, u.workspaceId, [op('messages', 's1', message('s1'))])).status).toBe(403);
    expect((await call('POST', '/api/sync/pull', stranger.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(403);
    expect((await call('POST', '/api/sync/snapshot', stranger.headers, { scope: { workspaceId: u.workspaceId } })).status).toBe(403);
    expect((await call('POST', '/api/sync/pull', {}, { scope: { workspaceId: u.workspaceId }, cursor: 0 })).status).toBe(401);
  });

  it('the same entity id in two workspaces stays two entities', async () => {
    const a = await syncUser();
    const b = await syncUser();
    await pushOk(a, a.workspaceId, [op('messages', 'same', message('same', { data: 'A' }))]);
    await pushOk(b, b.workspaceId, [op('messages', 'same', message('same', { data: 'B' })), op('messages', 'other', message('other'))]);
    expect((await pull(a, a.workspaceId, 0)).changes.map((c) => c.payload.data)).toEqual(['A']);
    expect((await pull(b, b.workspaceId, 0)).changes.map((c) => c.payload.data)).toEqual(['B', 'hello']);
  });

  it('editors cannot run GC; owners can', async () => {
    const u = await syncUser();
    const editor = await signedInUser();
    await upsertMember(env, u.workspaceId, editor.id, 'editor');
    const gc = (who: { headers: Record<string, string> }, path: string) =>
      call('POST', `/api/sync/${path}`, who.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 });
    expect((await gc(editor, 'gc-tombstones')).status).toBe(403);
    expect((await gc(editor, 'gc-change-log')).status).toBe(403);
    expect(await (await gc(u, 'gc-tombstones')).json()).toEqual({ deletedCount: 0 });
    expect(await (await gc(u, 'gc-change-log')).json()).toEqual({ deletedCount: 0 });
  });
});

describe('query plans', () => {
  it('push and pull statements use indexes, never a full scan', async () => {
    const u = await syncUser();
    await seed(u, 3);
    const { PUSH_LOOKUPS } = await import('../../src/workspace-db/push');
    const plans = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      const plan = (q: string, ...args: unknown[]) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${q}`, ...args)
          .toArray()
          .map((r) => r.detail)
          .join(' | ');
      return {
        opId: plan(PUSH_LOOKUPS.loggedOps, '["x","y"]'),
        row: plan(PUSH_LOOKUPS.currentRows, 'messages', '["m1","m2"]'),
        pull: plan(
          "SELECT changed_version FROM rows WHERE changed_version > ? AND (table_name != 'notifications' OR owner_id = ?) ORDER BY changed_version LIMIT ?",
          0,
          'u',
          10,
        ),
        losers: plan(PUSH_LOOKUPS.touchLosers, '[["messages","m1",9]]'),
        snapshot: plan(
          "SELECT pk FROM rows WHERE (table_name, pk) > (?, ?) AND (table_name != 'notifications' OR owner_id = ?) ORDER BY table_name, pk LIMIT ?",
          '',
          '',
          'u',
          10,
        ),
        refs: plan('SELECT count(*) FROM file_refs WHERE hash = ?', 'h'),
        refsByEntity: plan(PUSH_LOOKUPS.dropRefs, 'messages', '["m1"]'),
      };
    });
    for (const [name, plan] of Object.entries(plans)) {
      expect(plan, name).toMatch(/USING (INDEX|COVERING INDEX|INTEGER PRIMARY KEY|PRIMARY KEY)|SEARCH/);
      expect(plan.split(' | '), name).not.toContainEqual(expect.stringMatching(/^SCAN (change_log|rows|file_refs)\b/));
      expect(plan, name).not.toContain('USE TEMP B-TREE');
    }
  });
});

describe('membership on every request', () => {
  it('role changes, removal and workspace deletion made through the API apply to the very next sync request of the same session', async () => {
    const u = await syncUser();
    const member = await signedInUser();
    const admin = await signedInUser({ isAdmin: true });
    const ws = u.workspaceId;
    const adminCall = (method: string, path: string, body?: unknown) => call(method, path, { ...admin.headers, 'x-or3-admin-intent': 'admin' }, body);
    const status = async (path: 'push' | 'pull') =>
      (path === 'push'
        ? await push(member, ws, [op('messages', crypto.randomUUID(), undefined, { operation: 'delete' })])
        : await call('POST', '/api/sync/pull', member.headers, { scope: { workspaceId: ws }, cursor: 0 })
      ).status;
    expect([await status('push'), await status('pull')]).toEqual([403, 403]);
    expect((await adminCall('PUT', `/api/admin/workspaces/${ws}/members/${member.id}`, { role: 'editor' })).status).toBe(200);
    expect([await status('push'), await status('pull')]).toEqual([200, 200]);
    expect((await call('PUT', `/api/workspaces/${ws}/members/${member.id}`, u.headers, { role: 'viewer' })).status).toBe(200);
    expect([await status('push'), await status('pull')]).toEqual([403, 200]);
    expect((await call('DELETE', `/api/workspaces/${ws}/members/${member.id}`, u.headers)).status).toBe(200);
    expect([await status('push'), await status('pull')]).toEqual([403, 403]);
    expect((await adminCall('PUT', `/api/admin/workspaces/${ws}/members/${member.id}`, { role: 'editor' })).status).toBe(200);
    expect(await status('push')).toBe(200);
    expect((await call('DELETE', `/api/workspaces/${ws}`, u.headers)).status).toBe(200);
    expect([await status('push'), await status('pull')]).toEqual([403, 403]);
    // Another workspace's membership is never mistaken for this one's.
    const other = await syncUser();
    await upsertMember(env, other.workspaceId, member.id, 'owner');
    expect([await status('push'), await status('pull')]).toEqual([403, 403]);
  });
});

describe('wire encoding', () => {
  it('pages are built as text yet carry awkward keys, stamps and payloads exactly, and tombstone times in epoch seconds', async () => {
    const u = await syncUser();
    const pk = 'k "quoted" \\ é 😀 \u0001 \n end';
    const stamp = { deviceId: 'dev "x" \\ ü', hlc: 'h\u0002 "1"', clock: 7 };
    const data = 'line\nbreak "q" \\ \u0000 \u2028 😀';
    const put = op('messages', pk, message(pk, { data }), { ...stamp });
    await pushOk(u, u.workspaceId, [put]);
    const { changes } = await pull(u, u.workspaceId, 0);
    expect(changes).toEqual([
      { serverVersion: 1, tableName: 'messages', pk, op: 'put', stamp: { ...stamp, opId: put.stamp.opId }, payload: expect.objectContaining({ id: pk, data }) },
    ]);
    let { items } = await snapshotAll(u, u.workspaceId, 10);
    expect(items).toEqual([
      {
        kind: 'row',
        tableName: 'messages',
        pk,
        payload: expect.objectContaining({ id: pk, data }),
        revision: { clock: 7, hlc: stamp.hlc, opId: put.stamp.opId },
      },
    ]);

    const before = Date.now();
    const del = op('messages', pk, undefined, { operation: 'delete', clock: 8, deviceId: stamp.deviceId });
    await pushOk(u, u.workspaceId, [del]);
    const after = Date.now();
    expect((await pull(u, u.workspaceId, 1)).changes).toEqual([{ serverVersion: 2, tableName: 'messages', pk, op: 'delete', stamp: del.stamp }]);
    ({ items } = await snapshotAll(u, u.workspaceId, 10));
    expect(items).toEqual([
      { kind: 'tombstone', tableName: 'messages', pk, revision: { clock: 8, hlc: del.stamp.hlc, opId: del.stamp.opId }, serverDeletedAt: expect.any(Number) },
    ]);
    // Integer epoch seconds, as OR3's provider writes it (newer OR3 clients reject anything else).
    const deletedAt = items[0].serverDeletedAt;
    expect(Number.isInteger(deletedAt)).toBe(true);
    expect(deletedAt).toBeGreaterThanOrEqual(Math.floor(before / 1000));
    expect(deletedAt).toBeLessThanOrEqual(Math.floor(after / 1000));
    // The instant the object stored (ms), truncated to seconds; and the epoch (no time).
    const stored = await runInDurableObject(
      env.WORKSPACE.getByName(u.workspaceId),
      (_i, state) => state.storage.sql.exec<{ d: number }>('SELECT deleted_at AS d FROM rows').one().d,
    );
    expect(deletedAt).toBe(Math.floor(stored / 1000));
    for (const ms of [1_700_000_000_999, 1_700_000_001_000, 0]) {
      await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => void state.storage.sql.exec('UPDATE rows SET deleted_at = ?', ms));
      ({ items } = await snapshotAll(u, u.workspaceId, 10));
      expect(items[0].serverDeletedAt).toBe(Math.floor(ms / 1000));
    }
  });
});

describe('page byte budget', () => {
  it('pull and snapshot pages stop early on large payloads, always with at least one item, and say there is more', async () => {
    const u = await syncUser();
    await pushOk(
      u,
      u.workspaceId,
      [0, 1, 2].map((i) => op('messages', `big${i}`, message(`big${i}`, { data: 'x'.repeat(10_000) }))),
    );
    const engine = await import('../../src/workspace-db/reads');
    const result = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      const sql = state.storage.sql;
      const tiny = engine.pull(sql, { cursor: 0, limit: 100, userId: u.id }, 1);
      const two = engine.pull(sql, { cursor: 0, limit: 100, userId: u.id }, 25_000);
      const snap = engine.snapshotPage(sql, { after: null, pageSize: 100, userId: u.id }, 1);
      return {
        tiny: [tiny.count, tiny.hasMore, tiny.nextCursor],
        two: [JSON.parse(two.changesJson).length, two.hasMore],
        snap: [snap.count, JSON.parse(snap.itemsJson).length, snap.next],
      };
    });
    expect(result.tiny).toEqual([1, true, 1]);
    expect(result.two).toEqual([2, true]);
    expect(result.snap).toEqual([1, 1, ['messages', 'big0']]);
  });
});

describe('GC in bounded chunks', () => {
  it('deletes the eligible prefix a chunk at a time until done', async () => {
    const u = await syncUser();
    await pushOk(
      u,
      u.workspaceId,
      Array.from({ length: 5 }, (_, i) => op('messages', `g${i}`, message(`g${i}`))),
    );
    const retention = await import('../../src/workspace-db/retention');
    const meta = await import('../../src/workspace-db/meta');
    const steps = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      const sql = state.storage.sql;
      sql.exec('UPDATE change_log SET created_at = created_at - 7200000 WHERE server_version <= 4');
      const out = [];
      for (;;) {
        const range = retention.prunableRange(sql, Date.now() - 3_600_000, 3);
        if (!range) break;
        out.push({ deleted: retention.pruneThrough(sql, range.to), done: range.last });
        if (range.last) break;
      }
      return { out, floor: meta.prunedThrough(sql) };
    });
    expect(steps.out).toEqual([
      { deleted: 3, done: false },
      { deleted: 1, done: true },
    ]);
    expect(steps.floor).toBe(4);
  });
});
