/** The local half of the SDK, no server: the outbox middleware on real Dexie (fake-indexeddb) and the HLC. */
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { markRemote, openDatabase } from '../src/db';
import { HybridClock, parseHlc } from '../src/hlc';
import { Or3Error } from '../src/http';
import { StatusTracker, type SyncStatus } from '../src/status';
import { messageRow } from './harness';

function localDb(clock = new HybridClock('dev-test')) {
  let captured = 0;
  const db = openDatabase(`t-${crypto.randomUUID()}`, { clock, onCaptured: () => captured++ }, { indexedDB: new IDBFactory(), IDBKeyRange });
  return { db, clock, captured: () => captured };
}

describe('HybridClock', () => {
  it('never goes backwards, even when the wall clock does, and compares as strings', () => {
    let wall = 1_000_000;
    const clock = new HybridClock('dev', undefined, () => wall);
    const stamps = [clock.next(), clock.next()];
    wall -= 5_000; // NTP step back
    stamps.push(clock.next(), clock.next());
    wall += 10_000;
    stamps.push(clock.next());
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]! > stamps[i - 1]!).toBe(true);
    expect(parseHlc(stamps[2]!)).toEqual({ wall: 1_000_000, counter: 2 });
  });

  it('moves past stamps observed from other devices', () => {
    const clock = new HybridClock('a', undefined, () => 1_000);
    clock.observe('000000000005000:000007:b');
    const next = clock.next();
    expect(next > '000000000005000:000007:b').toBe(true);
    expect(parseHlc(next)).toEqual({ wall: 5_000, counter: 8 });
  });
});

describe('outbox capture', () => {
  it('captures a plain Dexie put as one op in the same transaction, bumping the clock', async () => {
    const { db, captured } = localDb();
    await db.messages.put(messageRow('m1', { clock: 0 }));
    const [op] = await db.pending_ops.toArray();
    expect(op).toMatchObject({ tableName: 'messages', pk: 'm1', operation: 'put', clock: 1, deviceId: 'dev-test', attempts: 0 });
    expect(op!.payload).toMatchObject({ id: 'm1', clock: 1 });
    expect((await db.messages.get('m1'))!.clock).toBe(1);
    expect(await db.revisions.get(['messages', 'm1'])).toMatchObject({ clock: 1, opId: op!.opId, local: true, deleted: false });
    await new Promise((r) => setTimeout(r, 10));
    expect(captured()).toBe(1);
  });

  it('an aborted transaction leaves neither the row nor its op', async () => {
    const { db } = localDb();
    await expect(
      db.transaction('rw', db.messages, async () => {
        await db.messages.put(messageRow('m1'));
        throw new Error('app failure');
      }),
    ).rejects.toThrow('app failure');
    expect(await db.messages.count()).toBe(0);
    expect(await db.pending_ops.count()).toBe(0);
    expect(await db.revisions.count()).toBe(0);
  });

  it('coalesces waiting ops per row, and captures update(), delete() and clear()', async () => {
    const { db } = localDb();
    await db.messages.put(messageRow('m1', { data: 'one' }));
    await db.messages.update('m1', { data: 'two' });
    await db.messages.put({ ...(await db.messages.get('m1'))!, data: 'three' });
    let ops = await db.pending_ops.toArray();
    expect(ops).toHaveLength(1);
    expect(ops[0]).toMatchObject({ operation: 'put', clock: 3 });
    expect(ops[0]!.payload).toMatchObject({ data: 'three', thread_id: 't1' });
    await db.messages.bulkPut([messageRow('m2'), messageRow('m3')]);
    await db.messages.delete('m2');
    await db.messages.clear();
    ops = await db.pending_ops.orderBy('seq').toArray();
    expect(ops.map((o) => `${o.pk}:${o.operation}:${o.clock}`).sort()).toEqual(['m1:delete:4', 'm2:delete:2', 'm3:delete:2']);
    expect(await db.revisions.get(['messages', 'm3'])).toMatchObject({ deleted: true, clock: 2 });
  });

  it('captures upsert() of a new row, and no op for an add the store refused', async () => {
    const { db } = localDb();
    await db.kv.upsert('k1', { id: 'k1', name: 'theme', value: 'dark', created_at: 1, updated_at: 1, clock: 0 });
    expect(await db.kv.get('k1')).toMatchObject({ value: 'dark', clock: 1 });
    expect(await db.pending_ops.toArray()).toMatchObject([{ pk: 'k1', operation: 'put', payload: { value: 'dark' } }]);
    await db.kv.upsert('k1', { value: 'light' });
    expect(await db.pending_ops.toArray()).toMatchObject([{ pk: 'k1', clock: 2, payload: { value: 'light', name: 'theme' } }]);
    // An add of an existing key fails in the store; the app catches it; no op may claim it happened.
    await db.kv.add({ id: 'k1', name: 'theme', value: 'bogus', created_at: 1, updated_at: 1, clock: 0 }).catch(() => undefined);
    expect(await db.pending_ops.toArray()).toMatchObject([{ pk: 'k1', clock: 2, payload: { value: 'light' } }]);
    expect((await db.kv.get('k1'))!.value).toBe('light');
  });

  it('never captures writes marked as remote (what the sync engine applies)', async () => {
    const { db } = localDb();
    await db.transaction('rw', db.messages, async (tx) => {
      markRemote(tx);
      await db.messages.put(messageRow('remote', { clock: 7 }));
    });
    expect(await db.pending_ops.count()).toBe(0);
    expect((await db.messages.get('remote'))!.clock).toBe(7);
  });

  it('keeps the outbox across a reopen (nothing lost on reload)', async () => {
    const factory = new IDBFactory();
    const name = `t-${crypto.randomUUID()}`;
    const first = openDatabase(name, { clock: new HybridClock('d'), onCaptured: () => {} }, { indexedDB: factory, IDBKeyRange });
    await first.file_meta.put({ hash: 'sha256:' + 'a'.repeat(64), deleted: false, created_at: 1, updated_at: 1, clock: 0 });
    first.close();
    const second = openDatabase(name, { clock: new HybridClock('d'), onCaptured: () => {} }, { indexedDB: factory, IDBKeyRange });
    expect(await second.pending_ops.toArray()).toMatchObject([{ tableName: 'file_meta', pk: 'sha256:' + 'a'.repeat(64), operation: 'put' }]);
  });
});

describe('the status value', () => {
  it('is never offline with a live socket, and shows the socket again once back', () => {
    const seen: SyncStatus[] = [];
    const tracker = new StatusTracker({ realtime: 'connecting' }, (s) => seen.push(s));
    tracker.update({ phase: 'offline' });
    // The socket comes up before the loop notices the network is back.
    tracker.update({ realtime: 'live' });
    expect(tracker.current).toMatchObject({ phase: 'offline', realtime: 'offline' });
    tracker.update({ phase: 'syncing' });
    expect(tracker.current).toMatchObject({ phase: 'syncing', realtime: 'live' });
    expect(seen.every((s) => Object.isFrozen(s) && !(s.phase === 'offline' && s.realtime === 'live'))).toBe(true);
    // An error shows only with the phase that has one.
    tracker.update({ phase: 'error', error: new Or3Error(503, 'down', 'down') });
    tracker.update({ phase: 'idle', lastSyncedAt: 1 });
    expect(tracker.current).toMatchObject({ phase: 'idle', error: null, hasSynced: true });
    const count = seen.length;
    tracker.update({ phase: 'idle' });
    expect(seen).toHaveLength(count); // nothing changed, nothing emitted
  });
});
