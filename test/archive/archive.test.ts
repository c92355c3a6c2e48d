/** History archive: GC writes change-log rows to R2 (segments, day manifests, latest.json) before deleting them. */
import { env } from 'cloudflare:workers';
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { archivePrefix, archiveRows, latestKey, manifestKey, segmentsOf, type ArchivedEntry } from '../../src/workspace-db/history-archive';
import { parseJsonl, utcDate, type ManifestEntry } from '../../src/r2-jsonl';
import { collectChangeLog } from '../../src/workspace-db/retention';
import { call } from '../auth/helpers';
import { message, op, pull, pushOk, syncUser } from '../sync/helpers';

const HOUR = 3600_000;

async function ageLog(workspaceId: string, ms: number, upTo = Number.MAX_SAFE_INTEGER) {
  await runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_i, state) => {
    state.storage.sql.exec('UPDATE change_log SET created_at = created_at - ? WHERE server_version <= ?', ms, upTo);
  });
}

async function archived(workspaceId: string) {
  const listed = await env.BLOBS.list({ prefix: archivePrefix(workspaceId) });
  const segments = listed.objects
    .map((o) => o.key)
    .filter((k) => /\/date=\d{4}-\d{2}-\d{2}\/seq=/.test(k))
    .sort();
  const entries: ArchivedEntry[] = [];
  for (const key of segments) entries.push(...parseJsonl<ArchivedEntry>(await (await env.BLOBS.get(key))!.text()));
  return { segments, entries };
}

const gcLog = (u: { headers: Record<string, string>; workspaceId: string }) =>
  call('POST', '/api/sync/gc-change-log', u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 });

describe('history archive', () => {
  it('archives every row GC deletes, with a day manifest listing exactly the segments and latest.json', async () => {
    const u = await syncUser();
    const pushed = await pushOk(u, u.workspaceId, [
      op('messages', 'a', message('a', { data: 'first' })),
      op('messages', 'b', message('b')),
      op('messages', 'a', undefined, { operation: 'delete', clock: 2 }),
    ]);
    await ageLog(u.workspaceId, 2 * HOUR);
    expect(await (await gcLog(u)).json()).toEqual({ deletedCount: 3 });
    const { segments, entries } = await archived(u.workspaceId);
    expect(entries.map((e) => e.serverVersion)).toEqual([1, 2, 3]);
    expect(entries[0]).toMatchObject({
      tableName: 'messages',
      pk: 'a',
      op: 'put',
      opId: pushed.results[0]!.opId,
      payload: expect.objectContaining({ data: 'first' }),
      userId: u.id,
    });
    expect(entries[2]).toMatchObject({ op: 'delete', payload: null });
    const date = utcDate(Date.now() - 2 * HOUR);
    const manifest = parseJsonl<ManifestEntry>(await (await env.BLOBS.get(manifestKey(u.workspaceId, date)))!.text());
    expect(manifest.map((m) => m.key).sort()).toEqual(segments);
    expect(manifest[0]).toMatchObject({ first: 1, last: 3, count: 3 });
    expect(await (await env.BLOBS.get(latestKey(u.workspaceId)))!.json()).toMatchObject({ lastArchivedVersion: 3 });
    // The live log is gone, the history is not; the state still pulls (a diff of the rows).
    expect((await pull(u, u.workspaceId, 0)).changes.map((c: any) => [c.pk, c.op])).toEqual([
      ['b', 'put'],
      ['a', 'delete'],
    ]);
  });

  it('splits rows of different days into one segment per day', async () => {
    const u = await syncUser();
    await pushOk(
      u,
      u.workspaceId,
      Array.from({ length: 4 }, (_, i) => op('messages', `m${i}`, message(`m${i}`))),
    );
    await ageLog(u.workspaceId, 3 * 24 * HOUR, 2);
    await ageLog(u.workspaceId, 2 * HOUR);
    await gcLog(u);
    const { segments, entries } = await archived(u.workspaceId);
    expect(segments).toHaveLength(2);
    expect(segments.some((k) => k.endsWith('seq=1-2.jsonl'))).toBe(true);
    expect(segments.some((k) => k.endsWith('seq=3-4.jsonl'))).toBe(true);
    expect(entries.map((e) => e.serverVersion)).toEqual([1, 2, 3, 4]);
  });

  it('deletes nothing when R2 fails, and archives on the next run', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'x', message('x')), op('messages', 'y', message('y'))]);
    await ageLog(u.workspaceId, 2 * HOUR);
    const broken = { put: async () => Promise.reject(new Error('R2 unavailable')), get: async () => null } as unknown as R2Bucket;
    const stub = env.WORKSPACE.getByName(u.workspaceId);
    const failed = await runInDurableObject(stub, (_i, state) => collectChangeLog(state.storage, broken, u.workspaceId, 3600));
    expect(failed).toEqual({ deleted: 0, archived: false });
    expect((await pull(u, u.workspaceId, 0)).changes).toHaveLength(2);
    expect((await archived(u.workspaceId)).segments).toEqual([]);
    expect(await runInDurableObject(stub, (_i, state) => collectChangeLog(state.storage, env.BLOBS, u.workspaceId, 3600))).toEqual({
      deleted: 2,
      archived: true,
    });
    expect((await archived(u.workspaceId)).entries.map((e) => e.serverVersion)).toEqual([1, 2]);
  });

  it('is idempotent: a retried write produces the same object and no second manifest line', async () => {
    const workspaceId = crypto.randomUUID();
    const now = Date.now();
    const rows: ArchivedEntry[] = [1, 2].map((v) => ({
      serverVersion: v,
      opId: `op-${v}`,
      tableName: 'kv',
      pk: `k${v}`,
      op: 'put',
      payload: { v },
      clock: 1,
      hlc: 'h',
      deviceId: 'd',
      userId: 'u',
      fingerprint: 'f',
      createdAt: now,
    }));
    await archiveRows(env.BLOBS, workspaceId, rows);
    const first = await (await env.BLOBS.get(`archive/v1/ws=${workspaceId}/date=${utcDate(now)}/seq=1-2.jsonl`))!.text();
    await archiveRows(env.BLOBS, workspaceId, rows);
    const listed = await env.BLOBS.list({ prefix: archivePrefix(workspaceId) });
    expect(listed.objects.map((o) => o.key).sort()).toEqual(
      [`archive/v1/ws=${workspaceId}/date=${utcDate(now)}/seq=1-2.jsonl`, latestKey(workspaceId), manifestKey(workspaceId, utcDate(now))].sort(),
    );
    expect(await (await env.BLOBS.get(`archive/v1/ws=${workspaceId}/date=${utcDate(now)}/seq=1-2.jsonl`))!.text()).toBe(first);
    expect(parseJsonl(await (await env.BLOBS.get(manifestKey(workspaceId, utcDate(now))))!.text())).toHaveLength(1);
  });

  it('the alarm archives before it deletes too', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'z', message('z'))]);
    await ageLog(u.workspaceId, 31 * 24 * HOUR);
    expect(await runDurableObjectAlarm(env.WORKSPACE.getByName(u.workspaceId))).toBe(true);
    expect((await archived(u.workspaceId)).entries.map((e) => e.pk)).toEqual(['z']);
  });

  it('segmentsOf groups consecutive rows by UTC date', () => {
    const at = (v: number, day: string) => ({ serverVersion: v, createdAt: Date.parse(`${day}T12:00:00Z`) }) as ArchivedEntry;
    expect(segmentsOf([at(1, '2026-01-01'), at(2, '2026-01-01'), at(3, '2026-01-02')]).map((s) => [s.date, s.entries.length])).toEqual([
      ['2026-01-01', 2],
      ['2026-01-02', 1],
    ]);
  });
});
