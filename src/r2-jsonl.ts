/**
 * Immutable JSONL objects in R2, each listed in the manifest of its UTC day: the one format of
 * the history archive (workspace-db/history-archive.ts) and the audit log (audit/log.ts), so either can be
 * read for a date range with no database (docs/operations.md). Batch keys are deterministic, so
 * a retried write puts the same bytes under the same key and adds no second manifest line.
 */

/** One line of a day manifest: a batch object and the range of sequence numbers it holds. */
export interface ManifestEntry {
  key: string;
  first: number;
  last: number;
  count: number;
  bytes: number;
}

/** The UTC calendar date of an epoch-ms time. */
export const utcDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);

const toJsonl = (items: unknown[]) => items.map((i) => JSON.stringify(i)).join('\n') + '\n';

export function parseJsonl<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

const NDJSON = { httpMetadata: { contentType: 'application/x-ndjson' } };

/**
 * Adds an entry to a day manifest unless it is listed already, so a retried write adds no
 * second line. Read-modify-write: callers serialize their writes to one manifest.
 */
async function addToManifest(bucket: R2Bucket, key: string, entry: ManifestEntry): Promise<void> {
  const existing = await bucket.get(key);
  const lines = existing ? parseJsonl<ManifestEntry>(await existing.text()) : [];
  if (lines.some((l) => l.key === entry.key)) return;
  lines.push(entry);
  await bucket.put(key, toJsonl(lines), NDJSON);
}

/** Writes `items` (sequence numbers `first` … `last`) as one object at `key` and lists it in `manifestKey`. */
export async function writeBatch(bucket: R2Bucket, key: string, manifestKey: string, first: number, last: number, items: unknown[]): Promise<ManifestEntry> {
  const body = toJsonl(items);
  await bucket.put(key, body, NDJSON);
  const entry: ManifestEntry = { key, first, last, count: items.length, bytes: new TextEncoder().encode(body).byteLength };
  await addToManifest(bucket, manifestKey, entry);
  return entry;
}
