/**
 * The persisted audit log: security events as immutable JSONL objects in R2 under the same
 * deterministic key scheme as the history archive (src/r2-jsonl.ts), one manifest per UTC day,
 * so the log can be read for a date range with no database (docs/operations.md "Audit log"):
 *
 *   audit/v1/date=<YYYY-MM-DD>/seq=<first>-<last>.jsonl    one JSON line per event, in seq order
 *   audit/v1/manifests/date=<YYYY-MM-DD>.jsonl             one line per batch: { key, first, last, count, bytes }
 *
 * `seq` is allocated by the AuditLogDO (never reused), so a retried flush of the same batch
 * writes the same key and adds no second manifest line.
 */
import { parseJsonl, utcDate, writeBatch, type ManifestEntry } from '../r2-jsonl';

/** One persisted event: its sequence number, time, name and the fields it was emitted with. */
export interface AuditRecord {
  seq: number;
  at: string;
  event: string;
  [field: string]: string | number | boolean | null;
}

const PREFIX = 'audit/v1';
export const auditBatchKey = (date: string, first: number, last: number) => `${PREFIX}/date=${date}/seq=${first}-${last}.jsonl`;
export const auditManifestKey = (date: string) => `${PREFIX}/manifests/date=${date}.jsonl`;

/** The longest date range one read may cover. */
export const AUDIT_MAX_RANGE_DAYS = 31;

/** Writes seq-ordered records as one batch object per UTC day, each listed in its day manifest. */
export async function writeAuditBatch(bucket: R2Bucket, records: AuditRecord[]): Promise<ManifestEntry[]> {
  const byDate = new Map<string, AuditRecord[]>();
  for (const record of records) {
    const date = utcDate(Date.parse(record.at));
    const day = byDate.get(date);
    if (day) day.push(record);
    else byDate.set(date, [record]);
  }
  const written: ManifestEntry[] = [];
  for (const [date, batch] of byDate) {
    const first = batch[0]!.seq;
    const last = batch[batch.length - 1]!.seq;
    written.push(await writeBatch(bucket, auditBatchKey(date, first, last), auditManifestKey(date), first, last, batch));
  }
  return written;
}

/** Every UTC date from `from` to `to` inclusive (both `YYYY-MM-DD`). */
export function datesBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) out.push(utcDate(t));
  return out;
}

/**
 * The events of the given days, through their manifests, in the order they were recorded (day,
 * then seq); stops fetching batches once `limit` events are in hand and says whether more were
 * left, so a read of a busy month costs `limit` events, not the month.
 */
export async function readAudit(bucket: R2Bucket, dates: string[], limit: number): Promise<{ events: AuditRecord[]; truncated: boolean }> {
  const events: AuditRecord[] = [];
  for (const date of dates) {
    const manifest = await bucket.get(auditManifestKey(date));
    if (!manifest) continue;
    const batches = parseJsonl<ManifestEntry>(await manifest.text()).sort((a, b) => a.first - b.first);
    for (const batch of batches) {
      if (events.length === limit) return { events, truncated: true };
      const body = await bucket.get(batch.key);
      if (!body) continue;
      for (const event of parseJsonl<AuditRecord>(await body.text())) {
        if (events.length === limit) return { events, truncated: true };
        events.push(event);
      }
    }
  }
  return { events, truncated: false };
}
