import { describe, expect, it } from 'vitest';
import { WireError } from '../../protocol/errors';
import { TooDeep, canonicalJson, compareRevisions, prepareBatch, type PushOpInput } from '../../protocol/rules';

const stamp = (clock = 1, hlc = 'h', opId = '00000000-0000-4000-8000-000000000000') => ({ deviceId: 'd', opId, hlc, clock });
const msg = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  thread_id: 't',
  role: 'user',
  index: 0,
  order_key: 'a',
  deleted: false,
  created_at: 1,
  updated_at: 1,
  clock: 1,
  ...extra,
});
const put = (tableName: string, pk: string, payload: Record<string, unknown>, s = stamp()): PushOpInput => ({
  tableName,
  operation: 'put',
  pk,
  payload,
  stamp: s,
});

describe('canonicalJson', () => {
  it('sorts keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('keeps a "__proto__" key like any other, so different payloads never share a fingerprint', () => {
    expect(canonicalJson(JSON.parse('{"b":2,"__proto__":{"x":1}}'))).toBe('{"__proto__":{"x":1},"b":2}');
  });
});

describe('canonicalJson without recursion', () => {
  /** The previous, recursive definition: canonical output must never change (stored fingerprints). */
  const sortKeys = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sortKeys)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
          )
        : v;

  it('writes exactly what JSON.stringify of the key-sorted value writes', () => {
    const samples = [
      null,
      0,
      -0,
      1.5e300,
      'é "q" \\ \u0000 😀',
      true,
      [],
      {},
      [[]],
      [{}],
      { '': 1, ' ': [null, false, 'x'] },
      { z: [1, { y: { x: [2, 3, { w: 'deep' }] } }], a: '', m: [{ b: 2, a: 1 }] },
      JSON.parse('{"b":2,"__proto__":{"x":1},"a":[1,{"c":{"__proto__":null}}]}'),
    ];
    for (const sample of samples) expect(canonicalJson(sample)).toBe(JSON.stringify(sortKeys(sample)));
  });

  it('canonicalises 100,000 levels without overflowing the stack, and stops at maxDepth', () => {
    const deep = (levels: number) => JSON.parse('['.repeat(levels - 1) + '{"a":1}' + ']'.repeat(levels - 1));
    expect(canonicalJson(deep(100_000)).length).toBe(2 * 99_999 + 7);
    expect(canonicalJson(deep(64), 64)).toBe('['.repeat(63) + '{"a":1}' + ']'.repeat(63));
    expect(() => canonicalJson(deep(65), 64)).toThrow(TooDeep);
    // Scalars below the last level do not count as a level.
    expect(canonicalJson({ a: { b: 1 } }, 2)).toBe('{"a":{"b":1}}');
    expect(() => canonicalJson({ a: { b: {} } }, 2)).toThrow('nested deeper than 2 levels');
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

describe('fingerprints', () => {
  const fingerprintOf = async (op: PushOpInput) => (await prepareBatch([op], 'ws', 'u'))[0]!.fingerprint;

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
    const [del, flag] = await prepareBatch(
      [
        { tableName: 'threads', operation: 'delete', pk: 't', stamp: stamp() },
        put('threads', 't2', { id: 't2', status: 's', pinned: 1, deleted: 0, created_at: 1, updated_at: 1, clock: 1 }),
      ],
      'ws',
      'u',
    );
    expect(del).toMatchObject({ op: 'delete', payload: null, fileHashes: null });
    expect(flag!.op).toBe('put');
  });

  it('rejects the batch with a message naming the table and the problem', async () => {
    const attempt = prepareBatch(
      [put('messages', 'm', msg('m')), put('kv', 'k', { id: 'k', name: 'n', created_at: 'yesterday', updated_at: 1, clock: 1 })],
      'ws',
      'u',
    );
    await expect(attempt).rejects.toThrow(WireError);
    await expect(attempt).rejects.toThrow('Invalid payload for kv: created_at');
  });
});
