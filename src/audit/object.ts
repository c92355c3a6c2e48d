/**
 * AuditLogDO: one shard of the audit log (named `audit-<n>`, emit.ts `auditShardOf`; `audit`
 * is the single object of earlier releases) that serializes that shard's writes.
 *
 * Events arrive one at a time from every Worker isolate; writing each straight to R2 would make
 * one object per event and race on the day manifest. Instead they are appended to this object's
 * SQLite (durable before `append` resolves) and flushed in batches by an alarm a few seconds
 * later, or when a reader asks for them. Flushes are chained, so only one touches R2 at a time,
 * and a batch's upper bound is recorded before it is written: a retried flush after a crash
 * writes exactly the same keys. Rows are deleted only after their batch is in R2.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import { writeAuditBatch, type AuditRecord } from './log';

/** How long events wait for company before a flush. */
export const AUDIT_FLUSH_DELAY_MS = 5_000;
/** Events per flush: well under R2's object size and the object's memory. */
const FLUSH_BATCH = 2_000;

export type AuditInput = Omit<AuditRecord, 'seq'>;

export class AuditLogDO extends DurableObject<Bindings> {
  readonly #sql: SqlStorage;
  #flushing: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    // Two tiny tables that never change shape; AUTOINCREMENT so a seq is never reused after a delete.
    this.#sql.exec(`CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);`);
  }

  async append(events: AuditInput[]): Promise<void> {
    for (const event of events) this.#sql.exec('INSERT INTO pending (record) VALUES (?)', JSON.stringify(event));
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + AUDIT_FLUSH_DELAY_MS);
  }

  /** Writes everything pending to R2; returns how many events were flushed. */
  flush(bucket: R2Bucket = this.env.BLOBS): Promise<number> {
    const run = this.#flushing.then(async () => {
      let flushed = 0;
      for (;;) {
        const planned = this.#sql.exec<{ value: number }>("SELECT value FROM meta WHERE key = 'planned_through'").toArray()[0]?.value;
        const through =
          planned ??
          this.#sql.exec<{ seq: number | null }>('SELECT max(seq) AS seq FROM (SELECT seq FROM pending ORDER BY seq LIMIT ?)', FLUSH_BATCH).one().seq;
        if (through === null) return flushed;
        this.#sql.exec("INSERT INTO meta (key, value) VALUES ('planned_through', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", through);
        const records = this.#sql
          .exec<{ seq: number; record: string }>('SELECT seq, record FROM pending WHERE seq <= ? ORDER BY seq', through)
          .toArray()
          .map((row) => ({ ...(JSON.parse(row.record) as AuditInput), seq: row.seq }) as AuditRecord);
        if (records.length) await writeAuditBatch(bucket, records, this.ctx.id.name ?? 'audit');
        this.ctx.storage.transactionSync(() => {
          this.#sql.exec('DELETE FROM pending WHERE seq <= ?', through);
          this.#sql.exec("DELETE FROM meta WHERE key = 'planned_through'");
        });
        flushed += records.length;
      }
    });
    this.#flushing = run.catch(() => undefined);
    return run;
  }

  pendingCount(): number {
    return this.#sql.exec<{ n: number }>('SELECT count(*) AS n FROM pending').one().n;
  }

  /** At-least-once: a throw makes the runtime retry with backoff, and pending rows stay put. */
  override async alarm() {
    try {
      await this.flush();
    } catch (err) {
      logEvent('error', 'audit_flush_failed', { pending: this.pendingCount(), message: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }
}
