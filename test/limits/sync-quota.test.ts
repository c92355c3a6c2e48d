/**
 * API.md "Sync storage quota": a workspace's stored sync data is capped
 * (OR3_SYNC_WORKSPACE_QUOTA_BYTES), which the workspace's object reads from its own configuration:
 * 8192 bytes in this project (vitest.config.ts `worker-limits`).
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { message, op, pull, push, pushOk, syncUser, type SyncUser } from '../sync/helpers';

/** This project's OR3_SYNC_WORKSPACE_QUOTA_BYTES. */
const QUOTA = 8_192;

const pushWithQuota = (u: SyncUser, ops: unknown[]) => push(u, u.workspaceId, ops);

const usage = async (u: SyncUser) => {
  const res = await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers);
  expect(res.status).toBe(200);
  return res.json<{ used_bytes: number; quota_bytes: number; blob_count: number; sync_bytes: number; sync_quota_bytes: number }>();
};

/** The stored total recounted from the tables, with the formula migration 0004 applies. */
const recount = (u: SyncUser) =>
  runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
    const sql = state.storage.sql;
    const formula = `coalesce(sum(coalesce(length(CAST(payload AS BLOB)), 0) + length(CAST(pk AS BLOB)) + length(CAST(hlc AS BLOB)) + length(CAST(device_id AS BLOB)) + 160), 0)`;
    const fromFormula = sql.exec<{ n: number }>(`SELECT (SELECT ${formula} FROM change_log) + (SELECT ${formula} FROM rows) AS n`).one().n;
    const fromColumns = sql
      .exec<{ n: number }>('SELECT (SELECT coalesce(sum(size), 0) FROM change_log) + (SELECT coalesce(sum(size), 0) FROM rows) AS n')
      .one().n;
    const counter = Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'sync_bytes'").toArray()[0]?.value ?? 0);
    return { fromFormula, fromColumns, counter };
  });

const kilobyte = (id: string, extra: Record<string, unknown> = {}) => message(id, { data: 'x'.repeat(1_000), ...extra });

describe('sync storage quota', () => {
  it('refuses a push that would go over the quota whole, with 413 quota_exceeded, and stores nothing', async () => {
    const u = await syncUser();
    expect((await pushWithQuota(u, [op('messages', 'm1', kilobyte('m1')), op('messages', 'm2', kilobyte('m2'))])).status).toBe(200);
    const before = await usage(u);
    expect(before.sync_bytes).toBeGreaterThan(4_000);
    expect(before.sync_quota_bytes).toBe(QUOTA);
    const refused = await pushWithQuota(u, [op('messages', 'm3', kilobyte('m3')), op('messages', 'm4', kilobyte('m4'))]);
    expect(refused.status).toBe(413);
    const body = await refused.json<{ error: string; message: string }>();
    expect(body.error).toBe('quota_exceeded');
    expect(body.message).toContain(`of ${QUOTA} bytes`);
    // Nothing of the batch was stored: no rows, no log entries, no versions, no bytes.
    const page = await pull(u, u.workspaceId, 0);
    expect(page.changes.map((c) => c.pk)).toEqual(['m1', 'm2']);
    expect(page.nextCursor).toBe(2);
    expect(await usage(u)).toEqual(before);
    // Half of it still fits.
    expect((await pushOk(u, u.workspaceId, [op('messages', 'm3', kilobyte('m3'))])).serverVersion).toBe(3);
  });

  it('accepts deletes at the quota, refuses a batch that mixes a put in, and frees space through GC', async () => {
    const u = await syncUser();
    let n = 0;
    for (;;) {
      const res = await pushWithQuota(u, [op('messages', `m${n}`, kilobyte(`m${n}`))]);
      if (res.status === 413) break;
      expect(res.status).toBe(200);
      n++;
    }
    expect(n).toBeGreaterThan(1);
    const full = await usage(u);
    // A batch whose deletes free less than its puts need is refused whole.
    const mixed = await pushWithQuota(u, [
      op('messages', 'm0', undefined, { operation: 'delete', clock: 2 }),
      op('messages', 'x1', kilobyte('x1')),
      op('messages', 'x2', kilobyte('x2')),
    ]);
    expect(mixed.status).toBe(413);
    expect(await usage(u)).toEqual(full);
    // Deletes alone always go through, even though the log grows by one entry each.
    const deletes = Array.from({ length: n }, (_, i) => op('messages', `m${i}`, undefined, { operation: 'delete', clock: 2 }));
    expect((await pushWithQuota(u, deletes)).status).toBe(200);
    const deleted = await usage(u);
    expect(deleted.sync_bytes).toBeLessThan(full.sync_bytes + n * 400);
    // GC of the log and the tombstones gives the space back.
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      state.storage.sql.exec('UPDATE change_log SET created_at = created_at - 7200000');
      state.storage.sql.exec('UPDATE rows SET deleted_at = deleted_at - 7200000 WHERE deleted = 1');
    });
    for (const kind of ['gc-change-log', 'gc-tombstones']) {
      expect((await call('POST', `/api/sync/${kind}`, u.headers, { scope: { workspaceId: u.workspaceId }, retentionSeconds: 3600 })).status).toBe(200);
    }
    expect((await usage(u)).sync_bytes).toBe(0);
    expect((await pushWithQuota(u, [op('messages', 'again', kilobyte('again'))])).status).toBe(200);
  });

  it('reports sync_bytes and sync_quota_bytes in the usage route, as a running total that matches a recount', async () => {
    const u = await syncUser();
    const empty = await usage(u);
    expect(empty).toEqual({ used_bytes: 0, quota_bytes: 1000, blob_count: 0, sync_bytes: 0, sync_quota_bytes: QUOTA });
    // Multi-byte text, server-rewritten payloads (notifications, hlc dropped), losers, deletes.
    const note = { id: 'n1', user_id: 'x', type: 'info', title: 'é 😀 ü', deleted: false, created_at: 1, updated_at: 1, clock: 1, hlc: 'dropped' };
    await pushOk(u, u.workspaceId, [
      op('messages', 'é1', message('é1', { data: '😀 ünïcödé ✓' }), { deviceId: 'dév 😀', hlc: 'h 😀' }),
      op('notifications', 'n1', note),
      op('messages', 'é1', message('é1', { data: 'older' }), { clock: 0 }),
      op('messages', 'gone', message('gone')),
    ]);
    await pushOk(u, u.workspaceId, [op('messages', 'gone', undefined, { operation: 'delete', clock: 2 })]);
    const counted = await recount(u);
    expect(counted.counter).toBeGreaterThan(0);
    expect(counted.counter).toBe(counted.fromColumns);
    expect(counted.counter).toBe(counted.fromFormula);
    expect((await usage(u)).sync_bytes).toBe(counted.counter);
  });

  it('is validated like every knob', async () => {
    const u = await syncUser();
    const res = await apiWithEnv({ OR3_SYNC_WORKSPACE_QUOTA_BYTES: '12' }, `/api/storage/usage?workspace_id=${u.workspaceId}`, { headers: u.headers });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: 'misconfigured' });
  });
});
