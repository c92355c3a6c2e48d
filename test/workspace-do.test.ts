import { env } from 'cloudflare:workers';
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import journal from '../migrations/do/meta/_journal.json';

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
    expect(tables).toEqual(expect.arrayContaining(['meta', 'change_log', 'rows', 'device_cursors', 'file_refs', 'ws_tickets']));
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
