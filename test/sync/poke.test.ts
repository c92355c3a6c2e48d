import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
/**
 * docs/performance.md "Push": a push's poke is built from the ops it applied, not read back, and
 * a socket that pushed with `echo: false` hears none of its own changes. Both must mean exactly
 * what a pull from the previous head returns (same keys, winners, versions).
 */
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { prepareBatch, type PreparedOp } from '../../protocol/rules';
import { applyPush } from '../../src/workspace-db/push';
import { pull as readPull } from '../../src/workspace-db/reads';
import { signedInUser } from '../auth/helpers';
import { api } from '../helpers';
import { message, op, openSocket, pull, pushOk, syncUser, thread } from './helpers';

const connect = async (workspaceId: string, headers: Record<string, string>) => {
  const socket = await openSocket(await api(`/api/sync/ws?workspaceId=${workspaceId}`, { headers: { upgrade: 'websocket', ...headers } }));
  await socket.next((m) => m.type === 'hello');
  return socket;
};

const note = (id: string) => ({ id, user_id: 'x', type: 'info', title: 'private', read_at: null, deleted: false, created_at: 1, updated_at: 1, clock: 1 });

/** A batch with a key written twice (the later op wins), a delete, and a notification. */
const mixedBatch = (tag: string) => [
  op('threads', `${tag}t`, thread(`${tag}t`)),
  op('messages', `${tag}m`, message(`${tag}m`), { clock: 1 }),
  op('messages', `${tag}m`, message(`${tag}m`, { data: 'second' }), { clock: 2 }),
  op('messages', `${tag}gone`, undefined, { operation: 'delete', clock: 3 }),
  op('notifications', `${tag}n`, note(`${tag}n`)),
];

describe('pokes built from the pushed ops', () => {
  it('mean what a pull from the previous head returns, for the pusher and another user, on one log', async () => {
    const u = await syncUser();
    const other = await signedInUser();
    const batches = [
      mixedBatch('a'),
      mixedBatch('b'),
      // Losing ops only for an existing key: its winner is not in the batch, so it is read back (null).
      [op('messages', 'am', message('am', { data: 'old' }), { clock: 0, hlc: '000000000000000:000000:old' })],
      // A key edited again, one deleted, a notification updated.
      [
        op('messages', 'am', message('am', { data: 'third' }), { clock: 9 }),
        op('threads', 'bt', undefined, { operation: 'delete', clock: 9 }),
        op('notifications', 'an', note('an'), { clock: 9 }),
      ],
    ];
    const prepared: PreparedOp[][] = [];
    for (const batch of batches) prepared.push(await prepareBatch(batch, u.workspaceId, u.id));
    const compared = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_o, state) => {
      const sql = state.storage.sql;
      const out: { built: unknown; read: { mine: any[]; theirs: any[] } }[] = [];
      for (const ops of prepared) {
        const outcome = state.storage.transactionSync(() => applyPush(sql, ops, u.id, Date.now()));
        if (!outcome.ok) throw new Error(outcome.message);
        const from = outcome.serverVersion - outcome.allocated;
        const read = (userId: string) => JSON.parse(readPull(sql, { cursor: from, limit: outcome.allocated, userId }).changesJson);
        out.push({
          built: outcome.poke && { mine: JSON.parse(outcome.poke.mine), common: JSON.parse(outcome.poke.common), count: outcome.poke.count },
          read: { mine: read(u.id), theirs: read(other.id) },
        });
      }
      return out;
    });
    for (const [i, { built, read }] of compared.entries()) {
      if (i === 2) {
        expect(built).toBeNull();
        continue;
      }
      expect(built).toEqual({ mine: read.mine, common: read.theirs, count: read.mine.length });
    }
    // The batches' shapes were really exercised: a compacted key, a delete, a notification kept from others.
    const first = compared[0]!.built as { mine: any[]; common: any[] };
    expect(first.mine.map((c) => [c.pk, c.op])).toEqual([
      ['at', 'put'],
      ['am', 'put'],
      ['agone', 'delete'],
      ['an', 'put'],
    ]);
    expect(first.mine[1].payload.data).toBe('second');
    expect(first.common.map((c) => c.pk)).toEqual(['at', 'am', 'agone']);
  });

  it('a socket that pushes with echo: false hears its poke without its own changes; other sockets get them; without the flag, the echo stays', async () => {
    const u = await syncUser();
    const other = await signedInUser();
    await upsertMember(env, u.workspaceId, other.id, 'editor');
    const pusher = await connect(u.workspaceId, u.headers);
    const sibling = await connect(u.workspaceId, u.headers);
    const theirs = await connect(u.workspaceId, other.headers);

    pusher.send({ type: 'push', id: 'p1', ops: mixedBatch('a'), echo: false });
    const own = await pusher.next((m) => m.type === 'poke');
    const result = await pusher.next((m) => m.id === 'p1');
    expect(own).toEqual({ type: 'poke', serverVersion: 5, fromVersion: 0, changes: [] });
    expect(result).toMatchObject({ type: 'push-result', serverVersion: 5 });
    expect(result.results.map((r: any) => r.applied)).toEqual([true, false, true, true, true]);
    const [a, b] = await Promise.all([sibling.next((m) => m.type === 'poke'), theirs.next((m) => m.type === 'poke')]);
    expect(a).toMatchObject({ serverVersion: 5, fromVersion: 0 });
    expect(a.changes).toEqual((await pull(u, u.workspaceId, 0)).changes);
    expect(b.changes).toEqual((await pull(other, u.workspaceId, 0)).changes);
    expect(b.changes.map((c: any) => c.pk)).toEqual(['at', 'am', 'agone']);

    // Without the flag (an older SDK), the pusher still hears its own changes.
    pusher.send({ type: 'push', id: 'p2', ops: [op('messages', 'x1', message('x1'))] });
    const echoed = await pusher.next((m) => m.type === 'poke' && m.serverVersion === 6);
    expect(echoed.changes.map((c: any) => c.pk)).toEqual(['x1']);
    // An ill-typed flag is refused like any bad message.
    pusher.send({ type: 'push', id: 'p3', ops: [op('messages', 'x2', message('x2'))], echo: true });
    expect(await pusher.next((m) => m.id === 'p3')).toMatchObject({ type: 'error', error: 'invalid_body' });
    // An HTTP push pokes every socket with its changes, as before.
    await pushOk(u, u.workspaceId, [op('messages', 'x3', message('x3'))]);
    expect((await pusher.next((m) => m.type === 'poke' && m.serverVersion === 7)).changes.map((c: any) => c.pk)).toEqual(['x3']);
    for (const s of [pusher, sibling, theirs]) s.ws.close();
  });
});
