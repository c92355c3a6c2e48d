/**
 * The persisted audit log: security events as immutable JSONL objects in R2 under the same
 * deterministic key scheme as the history archive (src/r2-jsonl.ts), one manifest per UTC day,
 * so the log can be read for a date range with no database (docs/operations.md "Audit log"):
 *
 *   audit/v1/date=<YYYY-MM-DD>/shard=<name>/seq=<first>-<last>.jsonl   one JSON line per event, in seq order
 *   audit/v1/manifests/date=<YYYY-MM-DD>/shard=<name>.jsonl           one line per batch: { key, first, last, count, bytes }
 *
 * One manifest per shard and day, each written by its own shard only. `seq` is allocated by the
 * shard's AuditLogDO (never reused), so a retried flush of the same batch writes the same key
 * and adds no second manifest line. The single object of earlier releases (`audit`) wrote
 * `audit/v1/date=<d>/seq=…` and `audit/v1/manifests/date=<d>.jsonl`; those stay readable.
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
const LEGACY = 'audit';
export const auditBatchKey = (date: string, first: number, last: number, shard = LEGACY) =>
  shard === LEGACY ? `${PREFIX}/date=${date}/seq=${first}-${last}.jsonl` : `${PREFIX}/date=${date}/shard=${shard}/seq=${first}-${last}.jsonl`;
export const auditManifestKey = (date: string, shard = LEGACY) =>
  shard === LEGACY ? `${PREFIX}/manifests/date=${date}.jsonl` : `${PREFIX}/manifests/date=${date}/shard=${shard}.jsonl`;

/** The longest date range one read may cover. */
export const AUDIT_MAX_RANGE_DAYS = 31;

/** Writes seq-ordered records as one batch object per UTC day, each listed in its day manifest. */
export async function writeAuditBatch(bucket: R2Bucket, records: AuditRecord[], shard = LEGACY): Promise<ManifestEntry[]> {
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
    written.push(await writeBatch(bucket, auditBatchKey(date, first, last, shard), auditManifestKey(date, shard), first, last, batch));
  }
  return written;
}

/** Every UTC date from `from` to `to` inclusive (both `YYYY-MM-DD`). */
export function datesBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) out.push(utcDate(t));
  return out;
}

/** Which events a read keeps (all when absent), and how many of the kept ones to skip first (paging). */
export interface AuditFilter {
  match?: (event: AuditRecord) => boolean;
  offset?: number;
}

/**
 * The events of the given days, through their manifests: each shard's events in the order it
 * recorded them (so one source's events keep their order), the shards merged by time. Stops
 * reading a shard's batches once `offset + limit` matching events of the day are in hand and says
 * whether more were left, so a read of a busy month costs about that many events per shard, not
 * the month. The first `offset` matching events are skipped.
 */
export async function readAudit(
  bucket: R2Bucket,
  dates: string[],
  limit: number,
  filter: AuditFilter = {},
): Promise<{ events: AuditRecord[]; truncated: boolean }> {
  const offset = filter.offset ?? 0;
  const want = offset + limit;
  const events: AuditRecord[] = [];
  let truncated = false;
  for (const date of dates) {
    const listed = await bucket.list({ prefix: `${PREFIX}/manifests/date=${date}/` });
    const manifestKeys = [auditManifestKey(date), ...listed.objects.map((o) => o.key)];
    const shards: AuditRecord[][] = [];
    for (const key of manifestKeys) {
      const { records, more } = await readShard(bucket, key, want - events.length, filter.match);
      truncated ||= more;
      if (records.length) shards.push(records);
    }
    for (const event of mergeByTime(shards)) {
      if (events.length === want) return { events: events.slice(offset), truncated: true };
      events.push(event);
    }
  }
  return { events: events.slice(offset), truncated };
}

/** Up to `max` matching events of one shard's day, in seq order, and whether it had more. */
async function readShard(
  bucket: R2Bucket,
  manifestKey: string,
  max: number,
  match: (event: AuditRecord) => boolean = () => true,
): Promise<{ records: AuditRecord[]; more: boolean }> {
  const manifest = await bucket.get(manifestKey);
  if (!manifest) return { records: [], more: false };
  const records: AuditRecord[] = [];
  for (const batch of parseJsonl<ManifestEntry>(await manifest.text()).sort((a, b) => a.first - b.first)) {
    if (records.length >= max) return { records, more: true };
    const body = await bucket.get(batch.key);
    if (body) records.push(...parseJsonl<AuditRecord>(await body.text()).filter(match));
  }
  return { records: records.slice(0, Math.max(0, max)), more: records.length > max };
}

/** Merges shards by time, never reordering within a shard (each is already in recording order). */
function mergeByTime(shards: AuditRecord[][]): AuditRecord[] {
  const heads = shards.map(() => 0);
  const out: AuditRecord[] = [];
  for (;;) {
    let pick = -1;
    for (let i = 0; i < shards.length; i++) {
      const head = shards[i]![heads[i]!];
      if (head && (pick < 0 || head.at < shards[pick]![heads[pick]!]!.at)) pick = i;
    }
    if (pick < 0) return out;
    out.push(shards[pick]![heads[pick]!++]!);
  }
}
