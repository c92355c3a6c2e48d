/**
 * WorkspaceDO: one Durable Object per workspace, addressed by workspace id.
 *
 * It is the workspace's transaction boundary: its single thread and SQLite make version
 * allocation serial without locks. It stays thin: a small RPC surface over pure modules.
 * The schema is migrated in the constructor under `blockConcurrencyWhile`, so no request ever
 * sees a half-migrated database (a failed migration resets the object and the next request
 * retries it).
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle, type DrizzleSqliteDODatabase } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../../migrations/do/migrations.js';
import type { Bindings } from '../env';

export interface PingResult {
  ok: true;
  /** Number of schema migrations applied to this object's database. */
  migrations: number;
}

export class WorkspaceDO extends DurableObject<Bindings> {
  readonly #db: DrizzleSqliteDODatabase;

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.#db = drizzle(ctx.storage);
    void ctx.blockConcurrencyWhile(async () => {
      migrate(this.#db, migrations);
    });
  }

  /** Liveness probe for deep health checks: proves the object starts and its database answers. */
  ping(): PingResult {
    const row = this.ctx.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM __drizzle_migrations').one();
    return { ok: true, migrations: row.n };
  }
}
