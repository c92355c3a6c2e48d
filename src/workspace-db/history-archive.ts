/**
 * The history archive (docs/operations.md "History archive"): before change-log rows are deleted
 * by GC, they are written to R2 as immutable JSONL segments under deterministic keys, each day
 * has a JSONL manifest listing its segments, and `latest.json` points at the newest archived
 * version. So GC never loses history, and a workspace can be exported, audited and rebuilt with
 * no database:
 *
 *   archive/v1/ws=<workspaceId>/date=<YYYY-MM-DD>/seq=<first>-<last>.jsonl
 *   archive/v1/ws=<workspaceId>/manifests/date=<YYYY-MM-DD>.jsonl
 *   archive/v1/ws=<workspaceId>/latest.json
 *
 * Writes are idempotent by key: a retry writes the same bytes to the same segment key and adds
 * no second manifest line (src/r2-jsonl.ts). Callers delete rows only after `archiveRows` resolved.
 * The object writes it (retention.ts); the archive room (src/archive/) reads it for export,
 * import and fork.
 */
import { utcDate, writeBatch, type ManifestEntry } from '../r2-jsonl';

/** One change-log entry as archived (the wire names of a SyncChange, plus server fields). */
export interface ArchivedEntry {
  serverVersion: number;
  opId: string;
  tableName: string;
  pk: string;
  op: 'put' | 'delete';
  /** The stored payload; `any` because RPC's type mapping cannot carry `unknown`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  payload: { [key: string]: any } | null;
  clock: number;
  hlc: string;
  deviceId: string;
  userId: string;
  fingerprint: string;
  createdAt: number;
}

const PREFIX = 'archive/v1';

export const archivePrefix = (workspaceId: string) => `${PREFIX}/ws=${workspaceId}/`;
export const segmentKey = (workspaceId: string, date: string, first: number, last: number) =>
  `${PREFIX}/ws=${workspaceId}/date=${date}/seq=${first}-${last}.jsonl`;
export const manifestKey = (workspaceId: string, date: string) => `${PREFIX}/ws=${workspaceId}/manifests/date=${date}.jsonl`;
export const latestKey = (workspaceId: string) => `${PREFIX}/ws=${workspaceId}/latest.json`;

/** Splits version-ordered entries into runs of the same UTC date (one segment each). */
export function segmentsOf(entries: ArchivedEntry[]): { date: string; entries: ArchivedEntry[] }[] {
  const out: { date: string; entries: ArchivedEntry[] }[] = [];
  for (const entry of entries) {
    const date = utcDate(entry.createdAt);
    const last = out[out.length - 1];
    if (last && last.date === date) last.entries.push(entry);
    else out.push({ date, entries: [entry] });
  }
  return out;
}

/**
 * Writes the entries' segments, adds them to their day manifests, and moves `latest.json`
 * forward. Throws if any write fails; nothing is deleted by the caller then.
 */
export async function archiveRows(bucket: R2Bucket, workspaceId: string, entries: ArchivedEntry[]): Promise<ManifestEntry[]> {
  if (!entries.length) return [];
  const written: ManifestEntry[] = [];
  for (const segment of segmentsOf(entries)) {
    const first = segment.entries[0]!.serverVersion;
    const last = segment.entries[segment.entries.length - 1]!.serverVersion;
    written.push(
      await writeBatch(bucket, segmentKey(workspaceId, segment.date, first, last), manifestKey(workspaceId, segment.date), first, last, segment.entries),
    );
  }
  const newest = written[written.length - 1]!;
  const previous = await bucket.get(latestKey(workspaceId));
  const prior = previous ? (((await previous.json()) as { lastArchivedVersion?: number }).lastArchivedVersion ?? 0) : 0;
  if (newest.last > prior) {
    await bucket.put(
      latestKey(workspaceId),
      JSON.stringify({ workspaceId, lastArchivedVersion: newest.last, lastSegment: newest.key, updatedAt: new Date().toISOString() }),
      {
        httpMetadata: { contentType: 'application/json' },
      },
    );
  }
  return written;
}
