/** API.md Sync semantics, push side: versions, idempotency, logging, LWW, validation. */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { api } from '../helpers';
import { message, op, pull, push, pushOk, snapshotAll, syncUser, thread } from './helpers';

/** The op ids in the workspace's change log, in version order. */
const loggedOps = (workspaceId: string) =>
  runInDurableObject(env.WORKSPACE.getByName(workspaceId), (_i, state) =>
    state.storage.sql
      .exec<{ op_id: string }>('SELECT op_id FROM change_log ORDER BY server_version')
      .toArray()
      .map((r) => r.op_id),
  );

describe('push: versions', () => {
  it('allocates a contiguous block and answers the counter after the batch, one result per op in order', async () => {
    const u = await syncUser();
    const first = await pushOk(u, u.workspaceId, [op('threads', 't1', thread('t1')), op('messages', 'm1', message('m1'))]);
    expect(first.results.map((r) => r.serverVersion)).toEqual([1, 2]);
    expect(first.serverVersion).toBe(2);
    const ops = [op('messages', 'm2', message('m2')), op('messages', 'm3', message('m3')), op('messages', 'm4', message('m4'))];
    const second = await pushOk(u, u.workspaceId, ops);
    expect(second.results.map((r) => r.opId)).toEqual(ops.map((o) => o.stamp.opId));
    expect(second.results.map((r) => r.serverVersion)).toEqual([3, 4, 5]);
    expect(second.serverVersion).toBe(5);
  });

  it('20 concurrent pushes get unique, gapless versions', async () => {
    const u = await syncUser();
    const batches = Array.from({ length: 20 }, (_, i) => [op('messages', `c${i}a`, message(`c${i}a`)), op('messages', `c${i}b`, message(`c${i}b`))]);
    const replies = await Promise.all(batches.map((ops) => pushOk(u, u.workspaceId, ops)));
    const versions = replies.flatMap((r) => r.results.map((x) => x.serverVersion!)).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    for (const r of replies) expect(r.results[1]!.serverVersion).toBe(r.results[0]!.serverVersion! + 1);
  });
});

describe('push: idempotency', () => {
  it('a replay with the same fingerprint returns the original version and allocates nothing', async () => {
    const u = await syncUser();
    const o = op('messages', 'm1', message('m1'));
    const first = await pushOk(u, u.workspaceId, [o]);
    const replay = await pushOk(u, u.workspaceId, [{ ...o, attempts: 3, status: 'pending', createdAt: 1 }]);
    expect(replay.results).toEqual([{ opId: o.stamp.opId, success: true, serverVersion: first.results[0]!.serverVersion, replayed: true, applied: true }]);
    expect(replay.serverVersion).toBe(first.serverVersion);
  });

  it('the same opId with a different fingerprint is a CONFLICT result', async () => {
    const u = await syncUser();
    const o = op('messages', 'm1', message('m1'));
    await pushOk(u, u.workspaceId, [o]);
    const changed = { ...o, payload: message('m1', { data: 'changed' }) };
    const reply = await pushOk(u, u.workspaceId, [changed]);
    expect(reply.results[0]).toMatchObject({ opId: o.stamp.opId, success: false, errorCode: 'CONFLICT' });
    expect(reply.serverVersion).toBe(1);
  });

  it('a batch that names one opId twice, or an opId that is not a UUID, is refused whole with 400 and stores nothing', async () => {
    const u = await syncUser();
    const o = op('messages', 'm1', message('m1'));
    const repeated = await push(u, u.workspaceId, [o, op('messages', 'm2', message('m2')), o]);
    expect(repeated.status).toBe(400);
    expect((await repeated.json<{ message: string }>()).message).toMatch(/ops\.2\.stamp\.opId: repeats an earlier opId/);
    for (const bad of ['not-a-uuid', '0123456789abcdef0123456789abcdef', '01234567-89ab-cdef-0123-456789abcdef', '01234567-89ab-4def-c123-456789abcdef']) {
      const res = await push(u, u.workspaceId, [op('messages', 'm3', message('m3')), op('messages', 'm4', message('m4'), { opId: bad })]);
      expect(res.status, bad).toBe(400);
      expect((await res.json<{ message: string }>()).message, bad).toContain('ops.1.stamp.opId');
    }
    expect((await pull(u, u.workspaceId, 0)).changes).toEqual([]);
    // Upper-case and other versions are UUIDs too.
    const upper = crypto.randomUUID().toUpperCase();
    expect(
      (
        await pushOk(u, u.workspaceId, [
          op('messages', 'm5', message('m5'), { opId: upper }),
          op('messages', 'm6', message('m6'), { opId: '6ba7b810-9dad-11d1-80b4-00c04fd430c8' }),
        ])
      ).serverVersion,
    ).toBe(2);
  });

  it('fingerprints ignore the key order of payloads', async () => {
    const u = await syncUser();
    const o = op('messages', 'm1', message('m1'));
    await pushOk(u, u.workspaceId, [o]);
    const reordered = { ...o, payload: Object.fromEntries(Object.entries(o.payload!).reverse()) };
    expect((await pushOk(u, u.workspaceId, [reordered])).results[0]).toMatchObject({ success: true, serverVersion: 1 });
  });
});

describe('push: last-write-wins', () => {
  it('logs every accepted op, losers too, and keeps the greatest (clock, hlc, opId) whatever the arrival order', async () => {
    const u = await syncUser();
    const newer = op('messages', 'm1', message('m1', { data: 'newer', clock: 5 }), { clock: 5, hlc: '2' });
    const older = op('messages', 'm1', message('m1', { data: 'older', clock: 4 }), { clock: 4, hlc: '9' });
    await pushOk(u, u.workspaceId, [newer]);
    const reply = await pushOk(u, u.workspaceId, [older]);
    expect(reply.results[0]).toMatchObject({ success: true, serverVersion: 2 });
    // Pull serves the winner only, at the version of the key's last logged op (the loser's).
    const { changes } = await pull(u, u.workspaceId, 0);
    expect(changes.map((c) => [c.serverVersion, c.payload.data, c.stamp.opId])).toEqual([[2, 'newer', newer.stamp.opId]]);
    expect(await loggedOps(u.workspaceId)).toEqual([newer.stamp.opId, older.stamp.opId]);
    const { items } = await snapshotAll(u, u.workspaceId);
    expect(items).toEqual([
      expect.objectContaining({
        kind: 'row',
        pk: 'm1',
        payload: expect.objectContaining({ data: 'newer' }),
        revision: { clock: 5, hlc: '2', opId: newer.stamp.opId },
      }),
    ]);
  });

  it('reports an op that lost as a sync_conflict event with both revisions', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line) => void lines.push(String(line)));
    const u = await syncUser();
    const newer = op('messages', 'm1', message('m1'), { clock: 5, hlc: 'b' });
    const older = op('messages', 'm1', message('m1'), { clock: 4, hlc: 'z' });
    await pushOk(u, u.workspaceId, [newer, older]);
    const events = lines.filter((l) => l.includes('"sync_conflict"')).map((l) => JSON.parse(l));
    expect(events).toEqual([
      expect.objectContaining({
        workspaceId: u.workspaceId,
        tableName: 'messages',
        pk: 'm1',
        winner: { clock: 5, hlc: 'b', opId: newer.stamp.opId },
        loser: { clock: 4, hlc: 'z', opId: older.stamp.opId },
      }),
    ]);
    vi.restoreAllMocks();
  });

  it('breaks clock ties by hlc, then by opId, as plain strings', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [
      op('threads', 't1', thread('t1', { title: 'b' }), { clock: 3, hlc: 'b' }),
      op('threads', 't1', thread('t1', { title: 'a' }), { clock: 3, hlc: 'a' }),
      op('threads', 't2', thread('t2', { title: 'low' }), { clock: 3, hlc: 'x', opId: '00000000-0000-4000-8000-000000000001' }),
      op('threads', 't2', thread('t2', { title: 'high' }), { clock: 3, hlc: 'x', opId: 'ffffffff-0000-4000-8000-000000000001' }),
    ]);
    const { items } = await snapshotAll(u, u.workspaceId, 10);
    expect(items.map((i) => i.payload.title)).toEqual(['b', 'high']);
  });

  it('a delete writes one tombstone; an older put loses to it; a newer put brings the row back', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1'), { clock: 1 })]);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', undefined, { operation: 'delete', clock: 2 })]);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', undefined, { operation: 'delete', clock: 3 })]);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1', { data: 'stale' }), { clock: 1 })]);
    let { items } = await snapshotAll(u, u.workspaceId);
    expect(items).toEqual([
      expect.objectContaining({ kind: 'tombstone', pk: 'm1', revision: expect.objectContaining({ clock: 3 }), serverDeletedAt: expect.any(Number) }),
    ]);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1', { data: 'revived' }), { clock: 4 })]);
    ({ items } = await snapshotAll(u, u.workspaceId));
    expect(items).toEqual([expect.objectContaining({ kind: 'row', payload: expect.objectContaining({ data: 'revived' }) })]);
  });
});

describe('push: several ops on one row in one batch', () => {
  it('decides them in batch order, as if pushed one by one: log, results, winner and file refs', async () => {
    const u = await syncUser();
    const h1 = 'sha256:' + '1'.repeat(64);
    const h2 = 'sha256:' + '2'.repeat(64);
    const meta = (hash: string) => op('file_meta', hash, { hash, deleted: false, created_at: 1, updated_at: 1, clock: 1, name: 'f.png', kind: 'image' });
    const withFiles = (data: string, ...hashes: string[]) => ({ data, file_hashes: JSON.stringify(hashes) });
    const reply = await pushOk(u, u.workspaceId, [
      meta(h1),
      meta(h2),
      op('messages', 'm1', message('m1', withFiles('two', h1)), { clock: 2 }),
      op('messages', 'm1', message('m1', withFiles('one', h2)), { clock: 1 }), // loses to the op just before it
      op('messages', 'm1', undefined, { operation: 'delete', clock: 3 }),
      op('messages', 'm1', message('m1', withFiles('four', h2)), { clock: 4 }),
      op('messages', 'm2', message('m2', withFiles('other', h1))),
    ]);
    expect(reply.results.map((r) => [r.success, r.serverVersion])).toEqual([1, 2, 3, 4, 5, 6, 7].map((v) => [true, v]));
    const { changes } = await pull(u, u.workspaceId, 0);
    // Every op is logged; pull serves each key once, with its winner.
    expect(await loggedOps(u.workspaceId)).toHaveLength(7);
    expect(changes.map((c) => [c.serverVersion, c.pk, c.op, c.payload?.data ?? null])).toEqual([
      [1, h1, 'put', null],
      [2, h2, 'put', null],
      [6, 'm1', 'put', 'four'],
      [7, 'm2', 'put', 'other'],
    ]);
    const state = async () => {
      const { items } = await snapshotAll(u, u.workspaceId, 10);
      return Object.fromEntries(items.map((i) => [i.pk, i.kind === 'row' ? (i.payload.data ?? i.payload.ref_count) : 'tombstone']));
    };
    // m1's refs are those of its winner ('four': h2), not of 'two' (h1) or of the loser.
    expect(await state()).toEqual({ [h1]: 1, [h2]: 1, m1: 'four', m2: 'other' });
    // Within one batch: a put naming h1 then a newer one naming nothing leaves m1 with no refs.
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', withFiles('five', h1)), { clock: 5 }),
      op('messages', 'm1', message('m1', withFiles('six')), { clock: 6 }),
    ]);
    expect(await state()).toEqual({ [h1]: 1, [h2]: 0, m1: 'six', m2: 'other' });
  });

  it('a notification created earlier in the batch by the same user may be updated by it', async () => {
    const u = await syncUser();
    const n = (title: string) => ({ id: 'n1', user_id: 'ignored', type: 'info', title, read_at: null, deleted: false, created_at: 1, updated_at: 1, clock: 1 });
    const reply = await pushOk(u, u.workspaceId, [op('notifications', 'n1', n('first')), op('notifications', 'n1', n('second'), { clock: 2 })]);
    expect(reply.results.every((r) => r.success)).toBe(true);
    const { items } = await snapshotAll(u, u.workspaceId, 10);
    expect(items.map((i) => i.payload.title)).toEqual(['second']);
  });
});

describe('push: large batches', () => {
  it('stores a large batch of awkward text exactly as sent', async () => {
    const u = await syncUser();
    // Quotes, backslashes, accents, an emoji, control characters and an escaped lone surrogate
    // inside payloads: every one must come back unchanged.
    const awkward = 'plain "quoted" \\back\\slash\\ é ü 😀 \u0001\u001f tab\t nl\n \ud800 ';
    const data = (i: number) => `${i}:`.concat(awkward.repeat(Math.floor(150_000 / awkward.length)));
    const ops = Array.from({ length: 8 }, (_, i) => op('messages', `big${i}`, message(`big${i}`, { data: data(i) })));
    const reply = await pushOk(u, u.workspaceId, ops);
    expect(reply.serverVersion).toBe(8);
    const { changes } = await pull(u, u.workspaceId, 0, { limit: 100 });
    expect(changes.map((c) => c.payload.data === data(Number(c.pk.slice(3))))).toEqual(Array(8).fill(true));
    const { items } = await snapshotAll(u, u.workspaceId, 100);
    expect(items.filter((i) => i.payload.data === data(Number(i.pk.slice(3))))).toHaveLength(8);
  });

  it('refuses keys that are not valid Unicode text', async () => {
    const u = await syncUser();
    const res = await push(u, u.workspaceId, [op('messages', 'm\ud800', message('m\ud800'))]);
    expect(res.status).toBe(400);
    const stamp = await push(u, u.workspaceId, [op('messages', 'm1', message('m1'), { deviceId: 'dev\udc00' })]);
    expect(stamp.status).toBe(400);
  });
});

describe('push: payload rules', () => {
  it('refuses payloads nested deeper than 64 levels with 400 Invalid payload, storing nothing (10,000 and 2,000 levels included)', async () => {
    const u = await syncUser();
    // The payload is level 1; `data` holds the remaining levels as arrays around one object.
    // Written as text: JSON.stringify itself recurses, and would overflow in the test.
    const deepOp = (levels: number) => {
      const shell = JSON.stringify(op('messages', 'deep', message('deep', { data: '@' })));
      return shell.replace('"@"', '['.repeat(levels - 2) + '{"leaf":true}' + ']'.repeat(levels - 2));
    };
    for (const levels of [10_000, 2_000, 65]) {
      const body = `{"scope":${JSON.stringify({ workspaceId: u.workspaceId })},"ops":[${JSON.stringify(op('messages', 'ok', message('ok')))},${deepOp(levels)}]}`;
      const res = await api('/api/sync/push', { method: 'POST', headers: { ...u.headers, 'content-type': 'application/json' }, body });
      expect(res.status, `${levels} levels`).toBe(400);
      expect(await res.json(), `${levels} levels`).toEqual({ error: 'invalid_payload', message: 'Invalid payload for messages: nested deeper than 64 levels' });
    }
    expect((await pull(u, u.workspaceId, 0)).changes).toEqual([]);
    const ok = await api('/api/sync/push', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: `{"scope":${JSON.stringify({ workspaceId: u.workspaceId })},"ops":[${deepOp(64)}]}`,
    });
    expect(ok.status).toBe(200);
    const { items } = await snapshotAll(u, u.workspaceId);
    expect(JSON.stringify(items[0].payload.data)).toBe('['.repeat(62) + '{"leaf":true}' + ']'.repeat(62));
  });

  it('never stores hlc or ref_count from a client payload', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1', { hlc: 'client-hlc' }))]);
    await pushOk(u, u.workspaceId, [
      op('file_meta', 'sha256:' + 'a'.repeat(64), { hash: 'sha256:' + 'a'.repeat(64), deleted: false, created_at: 1, updated_at: 1, clock: 1, ref_count: 99 }),
    ]);
    const { changes } = await pull(u, u.workspaceId, 0);
    expect(changes[0].payload).not.toHaveProperty('hlc');
    expect(changes[1].payload.ref_count).toBe(0);
  });

  it('derives file_meta ref_count from file_hashes of live messages and posts', async () => {
    const u = await syncUser();
    const hash = 'sha256:' + 'b'.repeat(64);
    const meta = { hash, deleted: false, created_at: 1, updated_at: 1, clock: 1, name: 'a.png', kind: 'image' };
    await pushOk(u, u.workspaceId, [
      op('file_meta', hash, meta),
      op('messages', 'm1', message('m1', { file_hashes: JSON.stringify([hash]) })),
      op('posts', 'p1', { id: 'p1', title: 'T', content: 'C', post_type: 'doc', deleted: false, created_at: 1, updated_at: 1, clock: 1, file_hashes: [hash] }),
    ]);
    const refCount = async () => (await snapshotAll(u, u.workspaceId, 10)).items.find((i) => i.tableName === 'file_meta').payload.ref_count;
    expect(await refCount()).toBe(2);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1', { deleted: true, file_hashes: JSON.stringify([hash]) }), { clock: 2 })]);
    expect(await refCount()).toBe(1);
    await pushOk(u, u.workspaceId, [op('posts', 'p1', undefined, { operation: 'delete', clock: 2 })]);
    expect(await refCount()).toBe(0);
  });

  it('keeps message order fields unchanged through a round trip', async () => {
    const u = await syncUser();
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { index: 3, order_key: 'a0V' })),
      op('messages', 'm2', message('m2', { index: 3, order_key: 'a0' })),
    ]);
    const { changes } = await pull(u, u.workspaceId, 0);
    expect(changes.map((c) => [c.payload.index, c.payload.order_key])).toEqual([
      [3, 'a0V'],
      [3, 'a0'],
    ]);
  });

  it.each([
    ['an unknown table', [op('secrets', 'x', { id: 'x' })], 400, 'Invalid payload for secrets: unknown table'],
    ['a missing required field', [op('messages', 'm1', { ...message('m1'), role: undefined })], 400, 'Invalid payload for messages: role'],
    ['a wrong type', [op('threads', 't1', thread('t1', { pinned: 'yes' }))], 400, 'Invalid payload for threads: pinned'],
    ['a pk that is not payload.id', [op('messages', 'm1', message('m2'))], 400, 'Invalid payload for messages: payload.id must equal pk'],
    [
      'a file_meta pk that is not its hash',
      [op('file_meta', 'x', { hash: 'y', deleted: false, created_at: 1, updated_at: 1, clock: 1 })],
      400,
      'payload.hash must equal pk',
    ],
    ['a foreign workspace_id', [op('messages', 'm1', message('m1', { workspace_id: 'other' }))], 400, 'workspace_id does not match'],
    ['bad file_hashes', [op('messages', 'm1', message('m1', { file_hashes: 'not json' }))], 400, 'file_hashes'],
    ['a put without payload', [op('messages', 'm1', undefined)], 400, 'a put needs a payload'],
    ['a bad stamp', [{ ...op('messages', 'm1', message('m1')), stamp: { deviceId: 'd', opId: 'not-a-uuid', hlc: 'h', clock: 1 } }], 400, 'opId'],
    ['a negative clock', [{ ...op('messages', 'm1', message('m1')), stamp: { deviceId: 'd', opId: crypto.randomUUID(), hlc: 'h', clock: -1 } }], 400, 'clock'],
    ['101 ops', Array.from({ length: 101 }, (_, i) => op('messages', `m${i}`, message(`m${i}`))), 400, 'at most 100 ops'],
    ['a payload over 256 KB', [op('messages', 'm1', message('m1', { data: 'x'.repeat(257 * 1024) }))], 400, 'Invalid payload for messages: larger than'],
  ])('rejects the whole batch for %s, writing nothing', async (_name, ops, status, message_) => {
    const u = await syncUser();
    const res = await push(u, u.workspaceId, [op('messages', 'ok', message('ok')), ...(ops as unknown[])]);
    expect(res.status).toBe(status);
    expect((await res.json<{ message: string }>()).message).toContain(message_);
    const after = await pull(u, u.workspaceId, 0);
    expect(after.changes).toEqual([]);
  });

  it('rejects malformed envelopes and unknown envelope fields', async () => {
    const u = await syncUser();
    const { call } = await import('../auth/helpers');
    expect((await call('POST', '/api/sync/push', u.headers, { scope: { workspaceId: u.workspaceId }, ops: [], extra: 1 })).status).toBe(400);
    expect((await call('POST', '/api/sync/push', u.headers, { scope: { workspaceId: u.workspaceId } })).status).toBe(400);
    const { api } = await import('../helpers');
    const res = await api('/api/sync/push', { method: 'POST', headers: { ...u.headers, 'content-type': 'application/json' }, body: '{"scope":' });
    expect(res.status).toBe(400);
  });

  it('tolerates the x-or3-cloud-intent header', async () => {
    const u = await syncUser();
    const res = await push({ headers: { ...u.headers, 'x-or3-cloud-intent': 'mutation' } }, u.workspaceId, [op('messages', 'm1', message('m1'))]);
    expect(res.status).toBe(200);
  });
});
