/** Retention GC: never deletes what a live cursor needs; lagging devices are told to snapshot. */
import { env } from 'cloudflare:workers';
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { message, op, pull, pushOk, snapshotAll, syncUser } from './helpers';

const HOUR = 3600 * 1000;

/** Makes everything in the workspace look `ms` older (log entries, tombstones, device cursors). */
async function age(workspaceId: string, ms: number, what: 'all' | { device: string } = 'all') {
  await runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_i, state) => {
    if (what === 'all') {
      state.storage.sql.exec('UPDATE change_log SET created_at = created_at - ?', ms);
      state.storage.sql.exec('UPDATE rows SET deleted_at = deleted_at - ? WHERE deleted = 1', ms);
    } else {
      state.storage.sql.exec('UPDATE device_cursors SET updated_at = updated_at - ? WHERE device_id = ?', ms, what.device);
    }
  });
}

const logVersions = (workspaceId: string) =>
  runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_i, state) =>
    state.storage.sql
      .exec<{ v: number }>('SELECT server_version AS v FROM change_log ORDER BY server_version')
      .toArray()
      .map((r) => r.v),
  );

const gc = (u: { headers: Record<string, string>; workspaceId: string }, kind: 'gc-change-log' | 'gc-tombstones', retentionSeconds = 3600) =>
  call('POST', `/api/sync/${kind}`, u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds });
const cursor = (u: { headers: Record<string, string>; workspaceId: string }, deviceId: string, version: number) =>
  call('POST', '/api/sync/update-cursor', u.headers, { scope: { workspaceId: u.workspaceId }, deviceId, version });

async function replayed(u: { headers: Record<string, string>; workspaceId: string }) {
  const snap = await snapshotAll(u, u.workspaceId, 3);
  const state = new Map<string, unknown>();
  for (const i of snap.items) if (i.kind === 'row') state.set(i.pk, i.payload);
  for (const c of (await pull(u, u.workspaceId, snap.highWatermark)).changes) c.op === 'put' ? state.set(c.pk, c.payload) : state.delete(c.pk);
  return [...state.keys()].sort();
}

describe('change-log GC', () => {
  it('deletes only entries older than retention and at or below the slowest live cursor', async () => {
    const u = await syncUser();
    await pushOk(
      u,
      u.workspaceId,
      Array.from({ length: 6 }, (_, i) => op('messages', `m${i}`, message(`m${i}`))),
    );
    await cursor(u, 'fast', 6);
    await cursor(u, 'slow', 2);
    // Younger than retention: nothing goes, whatever the cursors say.
    expect(await (await gc(u, 'gc-change-log')).json()).toEqual({ deletedCount: 0 });
    await age(u.workspaceId, 2 * HOUR);
    expect(await (await gc(u, 'gc-change-log')).json()).toEqual({ deletedCount: 2 });
    expect(await logVersions(u.workspaceId)).toEqual([3, 4, 5, 6]);
    // Pull is a diff of the materialized rows: the log's floor does not stop a lagging device.
    expect(await pull(u, u.workspaceId, 2)).toMatchObject({ requiresSnapshot: false, oldestRetainedVersion: 1 });
    expect((await pull(u, u.workspaceId, 2)).changes.map((c) => c.serverVersion)).toEqual([3, 4, 5, 6]);
    expect((await pull(u, u.workspaceId, 0)).changes.map((c) => c.pk)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  });

  it('drops device cursors idle past retention first, then a lagging device bootstraps from a snapshot that reproduces the live rows', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'a', message('a')), op('messages', 'b', message('b')), op('messages', 'c', message('c'))]);
    await pushOk(u, u.workspaceId, [op('messages', 'b', undefined, { operation: 'delete', clock: 2 })]);
    await cursor(u, 'active', 4);
    await cursor(u, 'idle', 1);
    await age(u.workspaceId, 2 * HOUR);
    await age(u.workspaceId, 2 * HOUR, { device: 'idle' });
    expect(await (await gc(u, 'gc-change-log')).json()).toEqual({ deletedCount: 4 });
    // b's tombstone is still there, so a device at 1 can still learn of the delete by pulling.
    const lagging = await pull(u, u.workspaceId, 1);
    expect(lagging.requiresSnapshot).toBe(false);
    expect(lagging.changes.map((c) => [c.pk, c.op])).toEqual([
      ['c', 'put'],
      ['b', 'delete'],
    ]);
    // Once the tombstone is collected it could not: from below its version, bootstrap.
    expect(await (await gc(u, 'gc-tombstones')).json()).toEqual({ deletedCount: 1 });
    expect(await pull(u, u.workspaceId, 1)).toMatchObject({ changes: [], requiresSnapshot: true, nextCursor: 1, oldestRetainedVersion: 5 });
    expect((await pull(u, u.workspaceId, 4)).requiresSnapshot).toBe(false);
    expect(await replayed(u)).toEqual(['a', 'c']);
    // The dropped device's cursor is gone: it can start again from the snapshot watermark.
    expect((await cursor(u, 'idle', 4)).status).toBe(200);
  });
});

describe('tombstone GC', () => {
  it('deletes tombstones older than retention that every live cursor has seen, and keeps the rest', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'x', message('x')), op('messages', 'y', message('y'))]);
    await pushOk(u, u.workspaceId, [
      op('messages', 'x', undefined, { operation: 'delete', clock: 2 }),
      op('messages', 'y', undefined, { operation: 'delete', clock: 2 }),
    ]);
    await cursor(u, 'd', 3); // has seen x's delete (v3), not y's (v4)
    await age(u.workspaceId, 2 * HOUR);
    expect(await (await gc(u, 'gc-tombstones')).json()).toEqual({ deletedCount: 1 });
    const { items } = await snapshotAll(u, u.workspaceId);
    expect(items.map((i) => [i.pk, i.kind])).toEqual([['y', 'tombstone']]);
  });

  it.each([3599, 31_536_001, 1.5])('refuses retentionSeconds %s', async (retentionSeconds) => {
    const u = await syncUser();
    expect((await gc(u, 'gc-tombstones', retentionSeconds)).status).toBe(400);
  });
});

describe('GC on the alarm', () => {
  it('a push arms the alarm; the alarm collects with OR3_SYNC_RETENTION_SECONDS and is safe to run again', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'a', message('a')), op('messages', 'b', message('b'))]);
    await pushOk(u, u.workspaceId, [op('messages', 'b', undefined, { operation: 'delete', clock: 2 })]);
    const stub = env.WORKSPACE.getByName(u.workspaceId);
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();
    await age(u.workspaceId, 31 * 24 * HOUR); // past the 30-day default
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await pull(u, u.workspaceId, 0)).toMatchObject({ requiresSnapshot: true, oldestRetainedVersion: 4 });
    expect((await snapshotAll(u, u.workspaceId)).items.map((i) => i.pk)).toEqual(['a']);
    // Nothing left to collect: the alarm is not re-armed; arming and running it again changes nothing.
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).toBeNull();
    await runInDurableObject(stub, (_i, state) => state.storage.setAlarm(Date.now() + 1000));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await snapshotAll(u, u.workspaceId)).items.map((i) => i.pk)).toEqual(['a']);
  });
});

describe('sync rate limits', () => {
  it('limits GC to 10 per user per minute with Retry-After', async () => {
    const u = await syncUser();
    // Fixed windows: a burst across a minute edge may see the count reset once, so allow 21.
    let limited: Response | undefined;
    let allowed = 0;
    for (let i = 0; i < 21 && !limited; i++) {
      const res = await gc(u, 'gc-tombstones');
      if (res.status === 429) limited = res;
      else allowed++;
    }
    expect(allowed).toBeGreaterThanOrEqual(10);
    expect(limited?.status).toBe(429);
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited?.json()).toMatchObject({ error: 'rate_limited' });
  });
});
