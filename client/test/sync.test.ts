/** Two devices of one user against the real Worker: offline writes, convergence, deletes, snapshots, realtime, faults. */
import { describe, expect, it } from 'vitest';
import type { Or3Workspace, WebSocketLike } from '../src/index';
import { device, engineOf, internalsOf, messageRow, PASSWORD, serverPerFile, uniqueEmail, until, type Device } from './harness';

const ctx = serverPerFile();
const open = ctx.open;

/** One user signed in on two devices, both with the user's default workspace open. */
async function twoDevices(options: Parameters<typeof device>[1] = {}, optionsB: Parameters<typeof device>[1] = options) {
  const email = uniqueEmail();
  const a = device(ctx.server, options);
  const b = device(ctx.server, optionsB);
  await a.client.basicAuth.register({ email, password: PASSWORD });
  await b.client.basicAuth.signIn(email, PASSWORD);
  const wsA = await a.client.openWorkspace();
  const wsB = await b.client.openWorkspace();
  open.push(wsA, wsB);
  expect(wsB.id).toBe(wsA.id);
  return { a, b, wsA, wsB };
}

const text = async (ws: Or3Workspace, id: string) => (await ws.db.messages.get(id))?.data;

describe('two devices', () => {
  it('a write made offline on A reaches B after A reconnects', async () => {
    const { a, wsA, wsB } = await twoDevices();
    a.online = false;
    await wsA.db.messages.put(messageRow('m1', { data: 'written offline' }));
    await until(() => wsA.status.pending === 1, 5_000, 'one pending write');
    await until(() => wsA.status.phase === 'offline', 5_000, 'A offline');
    await new Promise((r) => setTimeout(r, 300));
    expect(await wsB.db.messages.get('m1')).toBeUndefined();
    a.online = true;
    await wsA.syncNow();
    expect(wsA.status.pending).toBe(0);
    await until(async () => (await text(wsB, 'm1')) === 'written offline', 10_000, 'B to see the message');
  });
});

describe('convergence', () => {
  it('concurrent edits converge to the same winner on both devices, and the loser hears about it', async () => {
    const { a, b, wsA, wsB } = await twoDevices();
    await wsA.db.messages.put(messageRow('m1', { data: 'base' }));
    await wsA.syncNow();
    await until(async () => (await text(wsB, 'm1')) === 'base', 10_000, 'B to get the base');
    const conflicts: { pk: string }[] = [];
    wsB.on('conflict', (c) => conflicts.push(c));
    a.online = false;
    b.online = false;
    // B edits first, A second: same clock, A's later HLC wins everywhere.
    await wsB.db.messages.update('m1', { data: 'from B' });
    await new Promise((r) => setTimeout(r, 5));
    await wsA.db.messages.update('m1', { data: 'from A' });
    a.online = true;
    await wsA.syncNow();
    b.online = true;
    await wsB.syncNow();
    await wsA.syncNow();
    expect(await text(wsA, 'm1')).toBe('from A');
    expect(await text(wsB, 'm1')).toBe('from A');
    expect(await engineOf(wsA).db.revisions.get(['messages', 'm1'])).toEqual(
      await engineOf(wsB)
        .db.revisions.get(['messages', 'm1'])
        .then((r) => ({ ...r, local: false })),
    );
    expect(conflicts.map((c) => c.pk)).toEqual(['m1']);
  });

  it('a delete propagates and is not resurrected by later syncs or a fresh bootstrap', async () => {
    const { a, wsA, wsB } = await twoDevices();
    await wsA.db.messages.bulkPut([messageRow('keep'), messageRow('gone')]);
    await wsA.syncNow();
    await until(async () => (await wsB.db.messages.count()) === 2, 10_000, 'B to get both');
    await wsB.db.messages.delete('gone');
    await wsB.syncNow();
    await until(async () => (await wsA.db.messages.get('gone')) === undefined, 10_000, 'A to drop it');
    expect((await engineOf(wsA).db.revisions.get(['messages', 'gone']))?.deleted).toBe(true);
    // Another round on both, then a third device bootstrapping from a snapshot: still gone.
    await wsA.syncNow();
    await wsB.syncNow();
    expect(await wsA.db.messages.get('gone')).toBeUndefined();
    const c = device(ctx.server);
    const session = await a.client.cachedSession();
    await c.client.basicAuth.signIn(session!.user!.email!, PASSWORD);
    const wsC = await c.client.openWorkspace();
    open.push(wsC);
    await wsC.syncNow();
    expect((await wsC.db.messages.toArray()).map((m) => m.id)).toEqual(['keep']);
    expect((await engineOf(wsC).db.revisions.get(['messages', 'gone']))?.deleted).toBe(true);
  });
});

describe('snapshot bootstrap', () => {
  it('a device behind GC bootstraps from a snapshot and keeps its pending ops', async () => {
    // B polls (no realtime), so pokes cannot carry A's changes to it: it really falls behind.
    const { a, b, wsA, wsB } = await twoDevices({}, { WebSocket: null, sync: { pollIntervalMs: 60_000 } });
    await wsA.db.messages.put(messageRow('early'));
    await wsA.syncNow();
    await wsB.syncNow();
    expect(await wsB.db.messages.get('early')).toBeDefined();
    // B can no longer push (its edit stays pending) and falls behind while A writes on.
    b.faults = ({ path }) => (path === '/api/sync/push' ? { status: 503 } : null);
    await wsB.db.messages.put(messageRow('b-local', { data: 'mine' }));
    await wsA.db.messages.bulkPut([messageRow('a1'), messageRow('a2'), messageRow('a3')]);
    await wsA.db.messages.delete('early');
    await wsA.syncNow();
    // Everything is made two hours old, then the owner runs GC (the routes' one-hour retention):
    // idle cursors are dropped, the log is archived and gone, and the tombstone of 'early' is
    // collected, so B (behind it) must bootstrap from a snapshot.
    const sql = await ctx.server.workspaceSql!(wsA.id);
    const twoHours = 2 * 3600_000;
    await sql.exec('UPDATE change_log SET created_at = created_at - ?', twoHours);
    await sql.exec('UPDATE rows SET deleted_at = deleted_at - ? WHERE deleted = 1', twoHours);
    await sql.exec('UPDATE device_cursors SET updated_at = updated_at - ?', twoHours);
    const http = internalsOf(a.client).http;
    for (const path of ['/api/sync/gc-change-log', '/api/sync/gc-tombstones'])
      await http.json('POST', path, { scope: { workspaceId: wsA.id }, retentionSeconds: 3600 });
    const snapshotsBefore = b.calls.filter((call) => call === 'POST /api/sync/snapshot').length;
    await engineOf(wsB).sync.pull();
    const ids = (await wsB.db.messages.toArray()).map((m) => m.id).sort();
    expect(ids).toEqual(['a1', 'a2', 'a3', 'b-local']);
    expect(await text(wsB, 'b-local')).toBe('mine');
    expect(wsB.status.pending).toBe(1);
    expect((await engineOf(wsB).sync.state()).cursor).toBeGreaterThanOrEqual(5);
    expect(b.calls.filter((call) => call === 'POST /api/sync/snapshot').length).toBeGreaterThan(snapshotsBefore);
    // Once B can push again, its edit reaches A.
    b.faults = null;
    await wsB.syncNow();
    await until(async () => (await text(wsA, 'b-local')) === 'mine', 10_000, 'A to get B’s edit');
  });
});

/** Resolves once the device has sent nothing for `ms` (its start-up rounds are over). */
async function settled(d: { calls: string[] }, ms = 400) {
  for (let seen = -1; seen !== d.calls.length;) {
    seen = d.calls.length;
    await new Promise((r) => setTimeout(r, ms));
  }
}

describe('realtime', () => {
  it('delivers a change to B without waiting for a poll', async () => {
    // Counts HTTP pulls: sync over the socket off for B.
    const slow = { sync: { pollIntervalMs: 3_600_000, realtimePollIntervalMs: 3_600_000, socketSync: false } };
    const { wsA, b, wsB } = await twoDevices({}, slow);
    await until(() => wsB.status.realtime === 'live', 10_000, 'B’s socket');
    await wsB.syncNow(); // the first round after start; from here on only a poke wakes B
    await settled(b, 1000);
    const pulls = () => b.calls.filter((c) => c === 'POST /api/sync/pull').length;
    const pullsBefore = pulls();
    let pullsAtArrival = -1;
    await wsA.db.messages.put(messageRow('live', { data: 'poke' }));
    await until(async () => (await text(wsB, 'live')) === 'poke' && (pullsAtArrival = pulls()) >= 0, 10_000, 'B to hear about it');
    // The change came with the poke: B applied it without a pull.
    expect(pullsAtArrival).toBe(pullsBefore);
    await wsA.syncNow(); // A's own round may still be waiting for its push response
    expect((await engineOf(wsB).sync.state()).cursor).toBe((await engineOf(wsA).sync.state()).cursor);
  });

  it('applies remote changes only from the cursor they were read from (another tab may have moved it)', async () => {
    const { wsB } = await twoDevices();
    await wsB.syncNow();
    const { cursor } = await engineOf(wsB).sync.state();
    const change = {
      serverVersion: cursor + 1,
      tableName: 'messages',
      pk: 'x1',
      op: 'put' as const,
      payload: messageRow('x1', { data: 'stale' }),
      stamp: { deviceId: 'other', opId: crypto.randomUUID(), hlc: '000000000000001:000001:other', clock: 1 },
    };
    expect(await engineOf(wsB).sync.applyRemote([change], cursor + 1, cursor + 7)).toBe(false);
    expect((await engineOf(wsB).sync.state()).cursor).toBe(cursor);
    expect(await wsB.db.messages.get('x1')).toBeUndefined();
    expect(await engineOf(wsB).sync.applyRemote([change], cursor + 1, cursor)).toBe(true);
    expect((await engineOf(wsB).sync.state()).cursor).toBe(cursor + 1);
  });

  it('a batch with a key twice is judged change by change: an older second change loses to the first, a newer one wins; deletes and puts land in bulk', async () => {
    const { wsB } = await twoDevices();
    await wsB.syncNow();
    const { cursor } = await engineOf(wsB).sync.state();
    const stamp = (clock: number) => ({ deviceId: 'other', opId: crypto.randomUUID(), hlc: `00000000000000${clock}:000001:other`, clock });
    const put = (pk: string, data: string, clock: number, v: number) => ({
      serverVersion: v,
      tableName: 'messages',
      pk,
      op: 'put' as const,
      payload: messageRow(pk, { data, clock }),
      stamp: stamp(clock),
    });
    const newer = put('twice-a', 'newer', 5, cursor + 1);
    const gone = { serverVersion: cursor + 5, tableName: 'messages', pk: 'twice-b', op: 'delete' as const, stamp: stamp(7) };
    const changes = [
      newer,
      put('twice-a', 'older', 3, cursor + 2),
      put('twice-b', 'first', 2, cursor + 3),
      put('twice-b', 'second', 4, cursor + 4),
      gone,
      put('once', 'x', 1, cursor + 6),
    ];
    expect(await engineOf(wsB).sync.applyRemote(changes, cursor + 6, cursor)).toBe(true);
    expect(await text(wsB, 'twice-a')).toBe('newer');
    expect(await engineOf(wsB).db.revisions.get(['messages', 'twice-a'])).toMatchObject({ clock: 5, opId: newer.stamp.opId, deleted: false });
    expect(await wsB.db.messages.get('twice-b')).toBeUndefined();
    expect(await engineOf(wsB).db.revisions.get(['messages', 'twice-b'])).toMatchObject({ clock: 7, opId: gone.stamp.opId, deleted: true });
    expect(await text(wsB, 'once')).toBe('x');
    expect((await engineOf(wsB).sync.state()).cursor).toBe(cursor + 6);
  });

  it('pulls instead when a poke does not start at its cursor (one was lost), and on syncNow()', async () => {
    // B's socket loses the next poke on the way (the transport, not the SDK, is faulty here).
    let dropNextPoke = false;
    class LossySocket extends WebSocket {
      override set onmessage(handler: ((ev: MessageEvent) => void) | null) {
        super.onmessage =
          handler &&
          ((ev: MessageEvent) => {
            if (dropNextPoke && String(ev.data).includes('"type":"poke"')) return void (dropNextPoke = false);
            handler(ev);
          });
      }
      override get onmessage() {
        return super.onmessage;
      }
    }
    // Counts HTTP pulls: sync over the socket off for B.
    const slow = { sync: { pollIntervalMs: 3_600_000, realtimePollIntervalMs: 3_600_000, socketSync: false } };
    const { wsA, b, wsB } = await twoDevices({}, { ...slow, WebSocket: LossySocket as unknown as new (url: string) => WebSocketLike });
    await until(() => wsB.status.realtime === 'live', 10_000, 'B’s socket');
    await wsB.syncNow();
    await settled(b, 1000);
    const pulls = () => b.calls.filter((c) => c === 'POST /api/sync/pull').length;
    const before = pulls();
    dropNextPoke = true;
    await wsA.db.messages.put(messageRow('missed', { data: 'gap' }));
    await wsA.syncNow();
    expect(dropNextPoke).toBe(false); // the poke was lost
    await wsA.db.messages.put(messageRow('after', { data: 'next' }));
    await until(async () => (await text(wsB, 'after')) === 'next', 10_000, 'B to catch up');
    expect(await text(wsB, 'missed')).toBe('gap');
    expect(pulls()).toBe(before + 1); // the second poke did not start at B's cursor: one pull
    await wsA.syncNow();
    expect((await engineOf(wsB).sync.state()).cursor).toBe((await engineOf(wsA).sync.state()).cursor);
    // syncNow() always pulls, even when the pokes say B is up to date.
    await wsB.syncNow();
    expect(pulls()).toBe(before + 2);
  });
});

describe('faults', () => {
  it('drops, 500s, 429s with Retry-After and timeouts lose nothing and duplicate nothing', async () => {
    // HTTP's faults (sync over the socket has its own tests, socket-sync.test.ts).
    // A short client timeout, so the injected hangs end quickly; not so short that registering
    // (a password hash) times out on a loaded machine.
    const { a, wsA, wsB } = await twoDevices({ timeoutMs: 2_000, sync: { socketSync: false } });
    // Every other push and pull fails, cycling through each kind of fault in turn.
    const menu = ['drop-before', 'drop-after', { status: 500 }, { status: 503 }, { status: 429, retryAfter: 1 }, 'timeout'] as const;
    const seen = new Map<string, number>();
    const injected = new Set<string>();
    a.faults = ({ path }) => {
      if (path !== '/api/sync/push' && path !== '/api/sync/pull') return null;
      const k = (seen.get(path) ?? 0) + 1;
      seen.set(path, k);
      if (k % 2 === 0 || k > 30) return null;
      const fault = menu[((k - 1) / 2) % menu.length]!;
      injected.add(`${path} ${typeof fault === 'string' ? fault : fault.status}`);
      return fault;
    };
    for (let burst = 0; burst < 20; burst++) {
      await wsA.db.messages.bulkPut(Array.from({ length: 2 }, (_, i) => messageRow(`f${burst}-${i}`, { data: `v${burst}` })));
      await new Promise((r) => setTimeout(r, 150));
    }
    await until(() => wsA.status.pending === 0 && wsA.status.phase === 'idle', 45_000, 'A’s outbox to drain');
    a.faults = null;
    await until(async () => (await wsB.db.messages.count()) === 40, 20_000, 'B to have all 40');
    // The faults really happened, including a push whose answer was lost after the server applied it.
    for (const fault of ['drop-before', 'drop-after', '500', '503', '429', 'timeout']) expect(injected).toContain(`/api/sync/push ${fault}`);
    // Exactly one server version per op: nothing was applied twice.
    const res = await internalsOf(a.client).http.json<{ changes: { pk: string; serverVersion: number }[]; hasMore: boolean }>('POST', '/api/sync/pull', {
      scope: { workspaceId: wsA.id },
      cursor: 0,
      limit: 1000,
    });
    expect(res.changes).toHaveLength(40);
    expect(new Set(res.changes.map((c) => c.pk)).size).toBe(40);
  });
});

describe('refused writes', () => {
  it('a viewer’s edits are refused, taken back locally, and later remote edits still arrive', async () => {
    const owner = device(ctx.server);
    await owner.client.basicAuth.register({ email: uniqueEmail('owner'), password: PASSWORD });
    const wsO = await owner.client.openWorkspace();
    open.push(wsO);
    await wsO.db.messages.put(messageRow('m1', { data: 'base' }));
    await wsO.syncNow();
    const { inviteToken } = await owner.client.workspaces.invite(wsO.id, 'viewer');
    const viewer = device(ctx.server);
    await viewer.client.basicAuth.register({ email: uniqueEmail('viewer'), password: PASSWORD, inviteToken });
    const wsV = await viewer.client.openWorkspace(wsO.id);
    open.push(wsV);
    await wsV.syncNow();
    expect(await text(wsV, 'm1')).toBe('base');
    const rejected: string[] = [];
    wsV.on('rejected', ({ op, error }) => rejected.push(`${op.pk}:${error.code}`));
    // An edit of an existing row and a new row: both refused (403), both undone locally.
    // Two edits (clock 3) so the refused revision would outrank the owner's next edit (clock 2).
    await wsV.db.messages.update('m1', { data: 'hacked' });
    await wsV.db.messages.update('m1', { data: 'hacked twice' });
    await wsV.db.messages.put(messageRow('m2', { data: 'not allowed' }));
    expect(await text(wsV, 'm1')).toBe('hacked twice');
    expect((await engineOf(wsV).db.revisions.get(['messages', 'm1']))?.clock).toBe(3);
    await wsV.syncNow();
    expect([...new Set(rejected)].sort()).toEqual(['m1:insufficient_role', 'm2:insufficient_role']);
    expect(await text(wsV, 'm1')).toBe('base');
    expect(await wsV.db.messages.get('m2')).toBeUndefined();
    expect([...new Set((await wsV.failedOps()).map((o) => o.pk))].sort()).toEqual(['m1', 'm2']);
    // The owner's next edit reaches the viewer: no leftover local revision blocks it.
    await wsO.db.messages.update('m1', { data: 'edited by owner' });
    await wsO.syncNow();
    await wsV.syncNow();
    expect(await text(wsV, 'm1')).toBe('edited by owner');
    await wsV.discardFailedOps();
    expect(await wsV.failedOps()).toEqual([]);
    expect(wsV.status).toMatchObject({ pending: 0, failed: 0 });
  });
});
