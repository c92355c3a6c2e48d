import { describe, expect, it } from 'vitest';
import { ApiError } from '../http/errors';
import { canonicalJson, compareRevisions, fingerprintOf, prepareBatch, type PushOpInput } from './protocol';

const stamp = (clock = 1, hlc = 'h', opId = '00000000-0000-4000-8000-000000000000') => ({ deviceId: 'd', opId, hlc, clock });
const msg = (id: string, extra: Record<string, unknown> = {}) => ({ id, thread_id: 't', role: 'user', index: 0, order_key: 'a', deleted: false, created_at: 1, updated_at: 1, clock: 1, ...extra });
const put = (tableName: string, pk: string, payload: Record<string, unknown>, s = stamp()): PushOpInput => ({ tableName, operation: 'put', pk, payload, stamp: s });

describe('canonicalJson', () => {
  it('sorts keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('keeps a "__proto__" key like any other, so different payloads never share a fingerprint', () => {
    expect(canonicalJson(JSON.parse('{"b":2,"__proto__":{"x":1}}'))).toBe('{"__proto__":{"x":1},"b":2}');
  });
});

describe('compareRevisions', () => {
  it('orders by clock, then hlc, then opId, as plain strings', () => {
    const r = (clock: number, hlc: string, opId: string) => ({ clock, hlc, opId });
    expect(compareRevisions(r(2, 'a', 'a'), r(1, 'z', 'z'))).toBe(1);
    expect(compareRevisions(r(1, 'b', 'a'), r(1, 'a', 'z'))).toBe(1);
    expect(compareRevisions(r(1, 'a', 'b'), r(1, 'a', 'a'))).toBe(1);
    expect(compareRevisions(r(1, '10', 'a'), r(1, '9', 'a'))).toBe(-1); // strings, not numbers
    expect(compareRevisions(r(1, 'a', 'a'), r(1, 'a', 'a'))).toBe(0);
  });
});

describe('fingerprintOf', () => {
  it('covers table, operation, pk, payload, clock, hlc and device, not queue fields', async () => {
    const base = put('messages', 'm', msg('m'));
    const f = await fingerprintOf(base);
    expect(await fingerprintOf({ ...base, attempts: 4 } as PushOpInput)).toBe(f);
    expect(await fingerprintOf({ ...base, payload: { ...msg('m'), data: 'x' } })).not.toBe(f);
    expect(await fingerprintOf({ ...base, stamp: stamp(2) })).not.toBe(f);
    expect(await fingerprintOf({ ...base, stamp: { ...stamp(), deviceId: 'other' } })).not.toBe(f);
    expect(await fingerprintOf({ ...base, operation: 'delete' })).not.toBe(f);
  });
});

describe('prepareBatch', () => {
  it('strips server fields, forces the notification owner, and derives file hashes of live rows only', async () => {
    const [m, n, dead] = await prepareBatch(
      [
        put('messages', 'm', msg('m', { hlc: 'x', ref_count: 7, file_hashes: '["h1","h1","h2"]' })),
        put('notifications', 'n', { id: 'n', user_id: 'spoofed', type: 't', title: 'T', deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
        put('messages', 'd', msg('d', { deleted: true, file_hashes: '["h3"]' })),
      ],
      'ws',
      'caller',
    );
    expect(JSON.parse(m!.payload!)).not.toHaveProperty('hlc');
    expect(JSON.parse(m!.payload!)).not.toHaveProperty('ref_count');
    expect(m!.fileHashes).toEqual(['h1', 'h2']);
    expect(JSON.parse(n!.payload!).user_id).toBe('caller');
    expect(dead!.fileHashes).toEqual([]);
  });

  it('accepts deletes without payloads and 0/1 flags', async () => {
    const [del, flag] = await prepareBatch([{ tableName: 'threads', operation: 'delete', pk: 't', stamp: stamp() }, put('threads', 't2', { id: 't2', status: 's', pinned: 1, deleted: 0, created_at: 1, updated_at: 1, clock: 1 })], 'ws', 'u');
    expect(del).toMatchObject({ op: 'delete', payload: null, fileHashes: null });
    expect(flag!.op).toBe('put');
  });

  it('rejects the batch with a message naming the table and the problem', async () => {
    const attempt = prepareBatch([put('messages', 'm', msg('m')), put('kv', 'k', { id: 'k', name: 'n', created_at: 'yesterday', updated_at: 1, clock: 1 })], 'ws', 'u');
    await expect(attempt).rejects.toThrow(ApiError);
    await expect(attempt).rejects.toThrow('Invalid payload for kv: created_at');
  });
});
