/**
 * The legacy-opId object migration (docs/api.md "Legacy opIds"): an object filled under the old
 * rules (opIds that are not UUIDs in its log, rows and tombstones) is rewritten in place, pages
 * from 0 then carry only UUIDs (as OR3's newer clients require), the rewrite is idempotent, and a
 * replay of an old op with its old opId is still recognised.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { rewriteLegacyOpIds } from '../../src/workspace-db/legacy-op-ids';
import { legacyOpUuid } from '../../protocol/legacy-op-ids';
import { message, op, pull, push, pushOk, snapshotAll, syncUser } from './helpers';

const uuid = z.string().uuid();

describe('legacy opIds', () => {
  it('rewrites an object filled under the old rules: pages from 0 carry only UUIDs, twice changes nothing, old replays are recognised', async () => {
    const u = await syncUser();
    const ops = [
      op('messages', 'm1', message('m1'), { clock: 1 }),
      op('messages', 'm2', message('m2'), { clock: 1 }),
      op('messages', 'm2', undefined, { operation: 'delete', clock: 2 }),
      op('messages', 'm3', message('m3', { data: 'loser' }), { clock: 1 }),
      op('messages', 'm3', message('m3', { data: 'winner' }), { clock: 5 }),
    ];
    const first = await pushOk(u, u.workspaceId, ops);
    const legacyIds = ops.map((_o, i) => (i % 2 ? `op_${i}` : `client-${i}:${'x'.repeat(i)}`));
    const stub = env.WORKSPACE.getByName(u.workspaceId);
    // Turn the object back into one written under the old rules: other opIds, no migration marker.
    await runInDurableObject(stub, (_o, state) => {
      const sql = state.storage.sql;
      ops.forEach((o, i) => {
        sql.exec('UPDATE change_log SET op_id = ? WHERE op_id = ?', legacyIds[i]!, o.stamp.opId);
        sql.exec('UPDATE rows SET op_id = ? WHERE op_id = ?', legacyIds[i]!, o.stamp.opId);
      });
      sql.exec("DELETE FROM meta WHERE key = 'legacy_op_ids'");
      const stale = sql.exec<{ n: number }>("SELECT count(*) AS n FROM rows WHERE op_id LIKE 'op_%' OR op_id LIKE 'client-%'").one().n;
      expect(stale).toBe(3); // m1, m2's tombstone, m3's winner
    });

    const rewritten = await runInDurableObject(stub, (_o, state) => state.storage.transactionSync(() => rewriteLegacyOpIds(state.storage.sql)));
    expect(rewritten).toBe(5);
    // Idempotent: again (marker kept, or even without it) nothing is rewritten.
    const again = await runInDurableObject(stub, (_o, state) =>
      state.storage.transactionSync(() => {
        const withMarker = rewriteLegacyOpIds(state.storage.sql);
        state.storage.sql.exec("DELETE FROM meta WHERE key = 'legacy_op_ids'");
        return [withMarker, rewriteLegacyOpIds(state.storage.sql)];
      }),
    );
    expect(again).toEqual([0, 0]);

    const page = await pull(u, u.workspaceId, 0);
    expect(page.changes.map((c) => c.pk)).toEqual(['m1', 'm2', 'm3']);
    for (const c of page.changes) expect(uuid.safeParse(c.stamp.opId).success, c.stamp.opId).toBe(true);
    expect(page.changes.map((c) => c.stamp.opId)).toEqual([legacyOpUuid(legacyIds[0]!), legacyOpUuid(legacyIds[2]!), legacyOpUuid(legacyIds[4]!)]);
    const snap = await snapshotAll(u, u.workspaceId, 10);
    for (const item of snap.items) expect(uuid.safeParse(item.revision.opId).success).toBe(true);

    // An old device pushes its old ops again, old opIds and all: recognised, nothing allocated.
    const replay = await pushOk(
      u,
      u.workspaceId,
      ops.map((o, i) => ({ ...o, stamp: { ...o.stamp, opId: legacyIds[i]! } })),
    );
    expect(replay.serverVersion).toBe(first.serverVersion);
    expect(replay.results.map((r: any) => [r.opId, r.success, r.replayed, r.serverVersion])).toEqual(
      ops.map((_o, i) => [legacyIds[i], true, true, first.results[i]!.serverVersion]),
    );
    // The superseded one names its winner by the rewritten id.
    expect((replay.results[3] as any).winner.revision.opId).toBe(legacyOpUuid(legacyIds[4]!));
    // A new op with a non-UUID opId is still refused whole.
    const fresh = await push(u, u.workspaceId, [op('messages', 'm9', message('m9'), { opId: 'op_new' })]);
    expect(fresh.status).toBe(400);
    expect((await fresh.json<any>()).message).toContain('ops.0.stamp.opId');
    expect((await pull(u, u.workspaceId, first.serverVersion)).changes).toEqual([]);
  });

  it('maps each legacy id to one RFC 4122 version-8 UUID, the same every time, different for different ids', () => {
    const a = legacyOpUuid('op_1');
    expect(a).toBe(legacyOpUuid('op_1'));
    expect(a).not.toBe(legacyOpUuid('op_2'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
