/**
 * Reads of the workspace database: the compacted pull (docs/sync.md "Pull") and snapshot pages,
 * built as JSON text by SQLite around the stored payloads. Synchronous: a cursor is never held
 * across an await.
 */
import type { Failure } from '../errors';
import { capabilityFailure } from '../../protocol/capabilities';
import { SYNC_LIMITS, type TableName } from '../../protocol/rules';
import { readPageToken, signPageToken, SNAPSHOT_TTL_MS, type PageState } from './page-token';
import { parseHash } from '../../protocol/hashes';
import { refCount } from './blobs';
import { collectedThrough, headVersion, sawDiscarded, snapshotKey } from './meta';
import type { SnapshotItem as WireSnapshotItem, SyncChange as WireChange } from '../../protocol/sync';

/**
 * A row payload parsed from stored JSON. Its shape was validated on the way in; `any` (not
 * `unknown`) because RPC's type mapping cannot carry `unknown` and a recursive JSON type is too
 * deep for it.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JsonObject = { [key: string]: any };

/** The wire contract's change (protocol/sync.ts, shared with the SDK), with stored payloads. */
export type SyncChange = WireChange<JsonObject>;

// -- wire encoding ------------------------------------------------------------------------------
//
// Pull and snapshot pages are JSON text built by SQLite, one text column per row, around the
// stored (canonical JSON) payloads. Handing the runtime one string per row instead of nine
// columns is most of the saving (docs/performance.md); no payload is parsed and re-serialized
// except file_meta's, whose `ref_count` is derived here and added in JS.
// json_quote() escapes differently from JSON.stringify in places (e.g. \u000a for \n) but
// always yields valid JSON for the same string.

/** Columns of one pull row: version, payload size, JSON (a prefix ending in `"payload":` for file_meta puts), and file_meta's pk and payload. */
type ChangeRow = [serverVersion: number, size: number | null, json: string, filePk: string | null, filePayload: string | null];

/**
 * One change per materialized row: the key's winning revision (a put with its payload, or a
 * delete with the tombstone's stamp) at the version of the key's most recent logged op.
 */
const CHANGE_COLUMNS = `changed_version, length(payload),
  '{"serverVersion":' || changed_version || ',"tableName":' || json_quote(table_name) || ',"pk":' || json_quote(pk)
  || ',"op":' || CASE WHEN deleted THEN '"delete"' ELSE '"put"' END
  || ',"stamp":{"deviceId":' || json_quote(device_id) || ',"opId":' || json_quote(op_id) || ',"hlc":' || json_quote(hlc) || ',"clock":' || clock || '}'
  || CASE WHEN payload IS NULL THEN '}' WHEN table_name = 'file_meta' THEN ',"payload":' ELSE ',"payload":' || payload || '}' END,
  CASE WHEN table_name = 'file_meta' AND payload IS NOT NULL THEN pk END,
  CASE WHEN table_name = 'file_meta' THEN payload END`;

/** Columns of one snapshot row: payload size, JSON (for a live file_meta row: the text before its payload), and file_meta's pk, payload and the text after it. */
type ItemRow = [size: number | null, json: string, filePk: string | null, filePayload: string | null, fileTail: string | null];

const REVISION_JSON = `',"revision":{"clock":' || clock || ',"hlc":' || json_quote(hlc) || ',"opId":' || json_quote(op_id) || '}'`;
/** serverDeletedAt in integer epoch seconds, as OR3's provider writes it (deleted_at is in ms). */
const DELETED_AT_SECONDS = `(coalesce(deleted_at, 0) / 1000)`;
const LIVE_FILE = `(table_name = 'file_meta' AND NOT deleted)`;
const ITEM_COLUMNS = `length(payload),
  CASE WHEN deleted
    THEN '{"kind":"tombstone","tableName":' || json_quote(table_name) || ',"pk":' || json_quote(pk) || ${REVISION_JSON} || ',"serverDeletedAt":' || ${DELETED_AT_SECONDS} || '}'
    ELSE '{"kind":"row","tableName":' || json_quote(table_name) || ',"pk":' || json_quote(pk) || ',"payload":'
      || CASE WHEN table_name = 'file_meta' THEN '' ELSE coalesce(payload, '{}') || ${REVISION_JSON} || '}' END
  END,
  CASE WHEN ${LIVE_FILE} THEN pk END,
  CASE WHEN ${LIVE_FILE} THEN coalesce(payload, '{}') END,
  CASE WHEN ${LIVE_FILE} THEN ${REVISION_JSON} || '}' END`;

/** file_meta's stored payload with the derived ref_count (never the client's), as JSON text. */
function filePayloadJson(sql: SqlStorage, pk: string, stored: string): string {
  const payload = JSON.parse(stored) as JsonObject;
  payload.ref_count = refCount(sql, parseHash(pk)?.canonical ?? pk);
  return JSON.stringify(payload);
}

/**
 * Takes rows from a cursor until `limit` rows or `budget` payload bytes (at least one row), and
 * says whether more remain. Iterates synchronously: the cursor is never held across an await.
 */
function takePage<T>(cursor: Iterable<T>, limit: number, budget: number, size: (row: T) => number): { page: T[]; more: boolean } {
  const page: T[] = [];
  let bytes = 0;
  for (const row of cursor) {
    const rowSize = size(row);
    if (page.length === limit || (page.length > 0 && bytes + rowSize > budget)) return { page, more: true };
    page.push(row);
    bytes += rowSize;
  }
  return { page, more: false };
}

// -- capability gate ----------------------------------------------------------------------------

/**
 * The capability gate's lookup (exported so the query-plan test checks this very statement).
 * `INDEXED BY`: with a `tables` filter the planner would otherwise walk those tables' rows by
 * primary key; the partial index holds only the few rows that need a capability.
 */
export const READER_GATE = 'SELECT flags FROM rows INDEXED BY rows_flags_idx WHERE flags != 0 AND deleted = 0 AND (flags & ?) != 0';

/**
 * A reader lacking a capability is refused (426) while the workspace holds a live row that needs
 * it, in the tables it reads (docs/api.md "Capabilities"): it would mangle such rows. One
 * lookup on the partial index `rows_flags_idx`, and only for readers that lack something.
 */
export function readerRefusal(sql: SqlStorage, missing: number, tables?: TableName[]): Failure | null {
  if (!missing) return null;
  const filter = tables?.length ? ` AND table_name IN (${tables.map(() => '?').join(', ')})` : '';
  const row = sql.exec<{ flags: number }>(`${READER_GATE}${filter} LIMIT 1`, missing, ...(tables ?? [])).toArray()[0];
  return row ? capabilityFailure(row.flags, missing) : null;
}

// -- pull ---------------------------------------------------------------------------------------

export interface PullInput {
  cursor: number;
  limit: number;
  tables?: TableName[];
  userId: string;
}

export interface PullOutcome {
  /**
   * The page's changes as the wire JSON array (SyncChange[]), built as text around the stored
   * payloads: no parse and re-serialize per row here, one string across the RPC boundary, and
   * the route splices it into the response as is.
   */
  changesJson: string;
  count: number;
  nextCursor: number;
  hasMore: boolean;
  oldestRetainedVersion: number;
  requiresSnapshot: boolean;
}

/**
 * A compacted pull (docs/sync.md "Pull"): every key whose most recent logged op is above the cursor,
 * once, with its current winning revision, in the order of that version. It reads the
 * materialized rows by `changed_version` (indexed), so its cost follows changed keys, not ops,
 * and superseded ops and last-write-wins losers are never served. Change-log GC does not limit
 * it; only tombstone GC does: a cursor below the newest collected tombstone's version may have
 * missed that delete, and must bootstrap from a snapshot.
 */
export function pull(sql: SqlStorage, input: PullInput, budget: number = SYNC_LIMITS.pageBytes): PullOutcome {
  const floor = collectedThrough(sql);
  const oldestRetainedVersion = floor + 1;
  if (input.cursor < floor || sawDiscarded(sql, input.cursor)) {
    return { changesJson: '[]', count: 0, nextCursor: input.cursor, hasMore: false, oldestRetainedVersion, requiresSnapshot: true };
  }
  const filter = input.tables?.length ? ` AND table_name IN (${input.tables.map(() => '?').join(', ')})` : '';
  const cursor = sql
    .exec(
      `SELECT ${CHANGE_COLUMNS} FROM rows
        WHERE changed_version > ? AND (table_name != 'notifications' OR owner_id = ?)${filter}
        ORDER BY changed_version LIMIT ?`,
      input.cursor,
      input.userId,
      ...(input.tables ?? []),
      input.limit + 1,
    )
    .raw<ChangeRow>();
  const { page, more: hasMore } = takePage(cursor, input.limit, budget, (r) => r[1] ?? 0);
  const changesJson = `[${page.map(([, , json, filePk, filePayload]) => (filePk === null || filePayload === null ? json : `${json}${filePayloadJson(sql, filePk, filePayload)}}`)).join(',')}]`;
  const nextCursor = page.length ? page[page.length - 1]![0] : input.cursor;
  return { changesJson, count: page.length, nextCursor, hasMore, oldestRetainedVersion, requiresSnapshot: false };
}

// -- snapshot -----------------------------------------------------------------------------------

/** The wire contract's snapshot item (protocol/sync.ts), with stored payloads. */
export type SnapshotItem = WireSnapshotItem<JsonObject>;

/**
 * One page of the materialized state after (afterTable, afterPk), ordered by (tableName, pk);
 * each entity appears once, as a row or a tombstone (SnapshotItem[] as JSON text, built like a
 * pull page). Reads one extra row to tell whether another page follows.
 */
export function snapshotPage(
  sql: SqlStorage,
  input: { after: [string, string] | null; pageSize: number; tables?: TableName[]; userId: string },
  budget: number = SYNC_LIMITS.pageBytes,
) {
  const filter = input.tables?.length ? ` AND table_name IN (${input.tables.map(() => '?').join(', ')})` : '';
  const after = input.after ?? ['', ''];
  const cursor = sql
    .exec(
      `SELECT ${ITEM_COLUMNS} FROM rows
        WHERE (table_name, pk) > (?, ?) AND (table_name != 'notifications' OR owner_id = ?)${filter}
        ORDER BY table_name, pk LIMIT ?`,
      after[0],
      after[1],
      input.userId,
      ...(input.tables ?? []),
      input.pageSize + 1,
    )
    .raw<ItemRow>();
  const { page, more } = takePage(cursor, input.pageSize, budget, (r) => r[0] ?? 0);
  const items = page.map(([, json, filePk, filePayload, fileTail]) =>
    filePk === null || filePayload === null ? json : `${json}${filePayloadJson(sql, filePk, filePayload)}${fileTail}`,
  );
  let next: [string, string] | null = null;
  if (more && items.length) {
    const last = JSON.parse(items[items.length - 1]!) as SnapshotItem;
    next = [last.tableName, last.pk];
  }
  return { itemsJson: `[${items.join(',')}]`, count: items.length, next };
}

/** A snapshot page as the route returns it; `itemsJson` is spliced into the response as is. */
export type SnapshotReply = { ok: true; snapshotId: string; highWatermark: number; itemsJson: string; nextPageToken: string | null };

/**
 * One page of a snapshot (docs/sync.md "Snapshot"): the first page fixes the snapshot's id and
 * high watermark; later pages come back with the page token the previous one handed out, sealed
 * with the workspace's own key and expiring after SNAPSHOT_TTL_MS (410).
 */
export async function snapshot(
  sql: SqlStorage,
  input: { pageSize: number; pageToken?: string; tables?: TableName[]; userId: string },
): Promise<SnapshotReply | Failure> {
  const key = snapshotKey(sql);
  let state: Omit<PageState, 'after'> & { after: [string, string] | null };
  if (input.pageToken) {
    const read = await readPageToken(key, input.pageToken);
    if (!read.ok) {
      return read.reason === 'expired'
        ? { ok: false, status: 410, code: 'snapshot_expired', message: 'This snapshot has expired; start a new one' }
        : { ok: false, status: 400, code: 'invalid_page_token', message: 'pageToken is not valid for this workspace' };
    }
    state = read.state;
  } else {
    // Rows read after this point may already include changes above the watermark; pulling
    // from the watermark re-applies them, and last-write-wins makes that harmless.
    state = { snapshotId: crypto.randomUUID(), highWatermark: headVersion(sql), after: null, expiresAt: Date.now() + SNAPSHOT_TTL_MS };
  }
  const page = snapshotPage(sql, { after: state.after, pageSize: input.pageSize, tables: input.tables, userId: input.userId });
  const nextPageToken = page.next ? await signPageToken(key, { ...state, after: page.next }) : null;
  return { ok: true, snapshotId: state.snapshotId, highWatermark: state.highWatermark, itemsJson: page.itemsJson, nextPageToken };
}
