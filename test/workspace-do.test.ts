import { env } from 'cloudflare:workers';
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import { describe, expect, it } from 'vitest';
import journal from '../migrations/do/meta/_journal.json';
import migrations from '../migrations/do/migrations.js';

const MIGRATIONS = journal.entries.length;

describe('WorkspaceDO schema', () => {
  it('migrates its schema in the constructor and answers ping', async () => {
    const stub = env.WORKSPACE.getByName(crypto.randomUUID());
    const result = await stub.ping();
    expect(result).toEqual({ ok: true, migrations: MIGRATIONS });
    const tables = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((r) => r.name),
    );
    expect(tables).toEqual(
      expect.arrayContaining([
        'meta',
        'change_log',
        'rows',
        'device_cursors',
        'file_refs',
        'ws_tickets',
        'roster_members',
        'roster_state',
        'roster_outbox',
        'roster_removed',
      ]),
    );
  });

  it('the roster migration applies over the tables an object made itself before it existed, keeping their rows', async () => {
    const stub = env.WORKSPACE.getByName(crypto.randomUUID());
    await stub.ping();
    const kept = await runInDurableObject(stub, async (_i, state) => {
      const sql = state.storage.sql;
      sql.exec("INSERT INTO roster_members (user_id, role, created_at, updated_at) VALUES ('u1', 'owner', 1, 1)");
      // As such an object stands: the roster's tables present, migration 0008 not recorded.
      const last = sql.exec<{ id: number }>('SELECT max(id) AS id FROM __drizzle_migrations').one().id;
      sql.exec('DELETE FROM __drizzle_migrations WHERE id = ?', last);
      await migrate(drizzle(state.storage), migrations);
      return sql.exec<{ user_id: string }>('SELECT user_id FROM roster_members').toArray();
    });
    expect(kept).toEqual([{ user_id: 'u1' }]);
    expect(await stub.ping()).toEqual({ ok: true, migrations: MIGRATIONS });
  });

  it('does not re-apply migrations when the object restarts', async () => {
    const stub = env.WORKSPACE.getByName(crypto.randomUUID());
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("INSERT INTO meta (key, value) VALUES ('probe', 'kept')");
    });
    await evictDurableObject(stub);
    expect(await stub.ping()).toEqual({ ok: true, migrations: MIGRATIONS });
    const value = await runInDurableObject(
      stub,
      (_i, state) => state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'probe'").one().value,
    );
    expect(value).toBe('kept');
  });
});
