/**
 * The SDK's typed rows against the Worker's validation: one row per table with exactly the fields
 * the SDK's types require (the fixtures are typed `Or3Tables[table]`, so a field the SDK stops
 * requiring, or starts requiring, breaks the type-check or this test), accepted by the server;
 * and each of those fields, taken away, refused. The table list and the revision order are one
 * definition for both ends (protocol/sync.ts), so only the rows need pinning.
 */
import { describe, expect, it } from 'vitest';
import { TABLES } from '../../protocol/sync';
import type { Or3Tables } from '../../client/src/tables';
import { WireError } from '../../protocol/errors';
import { prepareBatch } from '../../protocol/rules';

const base = { deleted: false, created_at: 1, updated_at: 1, clock: 1 };
/** The least each table's row type allows (plus `clock`, which the SDK always sets before it sends). */
const minimal: { [K in keyof Or3Tables]: Or3Tables[K] } = {
  threads: { id: 'k', status: 'ready', pinned: false, ...base },
  messages: { id: 'k', thread_id: 't', role: 'user', index: 0, order_key: 'a', ...base },
  projects: { id: 'k', name: 'P', ...base },
  posts: { id: 'k', title: 'T', content: 'C', post_type: 'note', ...base },
  kv: { id: 'k', name: 'n', created_at: 1, updated_at: 1, clock: 1 },
  file_meta: { hash: 'k', ...base },
  notifications: { id: 'k', user_id: 'u', type: 'info', title: 'T', ...base },
};

const push = (tableName: string, payload: Record<string, unknown>) =>
  prepareBatch([{ tableName, operation: 'put', pk: 'k', payload, stamp: { deviceId: 'd', opId: crypto.randomUUID(), hlc: 'h', clock: 1 } }], 'w', 'u');

describe('the SDK’s row types and the server’s payload rules', () => {
  it('name the same tables', () => {
    expect(Object.keys(minimal).sort()).toEqual([...TABLES].sort());
  });

  it.each(TABLES)('%s: the fields the SDK requires are enough, and each one is needed', async (table) => {
    const row = minimal[table] as unknown as Record<string, unknown>;
    await expect(push(table, row)).resolves.toHaveLength(1);
    for (const field of Object.keys(row)) {
      const { [field]: _gone, ...without } = row;
      const refused = await push(table, without).then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused, `${table} without ${field}`).toBeInstanceOf(WireError);
    }
  });
});
