/**
 * The sync engine's storage logic over a workspace's SQLite database. Every function here is
 * synchronous and is called by WorkspaceDO inside one `transactionSync`, so each call is atomic
 * and no other request of the workspace interleaves with it: that is what makes versions
 * gapless and contiguous without locks.
 *
 * Every statement is served by an index (docs/schema.md): change_log by its rowid
 * (server_version) and unique op_id, rows by (table_name, pk), file_refs by hash and by entity.
 */
import type { ArchivedEntry } from '../archive/archive';
import { parseHash } from '../storage/hashes';
import { compareRevisions, REFERENCING_TABLES, SYNC_LIMITS, type PreparedOp, type TableName } from './protocol';

/**
 * A row payload parsed from stored JSON. Its shape was validated on the way in; `any` (not
 * `unknown`) because RPC's type mapping cannot carry `unknown` and a recursive JSON type is too
 * deep for it.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JsonObject = { [key: string]: any };

export interface Revision {
  clock: number;
  hlc: string;
  opId: string;
}

export interface PushResult {
  opId: string;
  success: boolean;
  serverVersion?: number;
  error?: string;
  errorCode?: 'CONFLICT' | 'UNAUTHORIZED';
}

/** An op that lost last-write-wins against the stored revision (for the observability hook). */
export interface ConflictEvent {
  tableName: string;
  pk: string;
  winner: Revision;
  loser: Revision;
}

export interface PushOutcome {
  results: PushResult[];
  serverVersion: number;
  allocated: number;
  conflicts: ConflictEvent[];
}

/** A batch refused whole because it would take the workspace over its sync storage quota. */
export interface QuotaRefusal {
  quotaExceeded: { usedBytes: number; batchBytes: number; quotaBytes: number };
}

export interface SyncChange {
  serverVersion: number;
  tableName: string;
  pk: string;
  op: 'put' | 'delete';
  payload?: JsonObject;
  stamp: { deviceId: string; opId: string; hlc: string; clock: number };
}

const NOTIFICATIONS = 'notifications';

// -- meta ---------------------------------------------------------------------------------------

export function getMeta(sql: SqlStorage, key: string): string | null {
  const row = sql.exec<{ value: string }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0];
  return row ? row.value : null;
}

export function setMeta(sql: SqlStorage, key: string, value: string | number) {
  sql.exec('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', key, String(value));
}

/** The workspace's version counter: the highest allocated server_version. */
export const headVersion = (sql: SqlStorage) => Number(getMeta(sql, 'server_version') ?? 0);
/** Everything at or below this version may have been removed from the change log by GC. */
export const prunedThrough = (sql: SqlStorage) => Number(getMeta(sql, 'pruned_through') ?? 0);
/**
 * Bytes of sync data stored (change log + materialized rows, by `entryBytes`), kept as a
 * running total: every write and every GC deletion moves it, so the quota check is O(1).
 */
export const syncBytes = (sql: SqlStorage) => Number(getMeta(sql, 'sync_bytes') ?? 0);
const addSyncBytes = (sql: SqlStorage, delta: number) => {
  if (delta !== 0) setMeta(sql, 'sync_bytes', syncBytes(sql) + delta);
};
/** The highest `changed_version` of a collected tombstone: pulls from below it need a snapshot. */
export const collectedThrough = (sql: SqlStorage) => Number(getMeta(sql, 'collected_through') ?? 0);

// -- push ---------------------------------------------------------------------------------------

type CurrentRow = {
  clock: number;
  hlc: string;
  op_id: string;
  owner_id: string | null;
  size: number;
};

/**
 * JSON arrays of `rows`, each at most about `maxChars` long (always at least one row), for
 * statements that read their rows with `json_each(?)`. A bound string may be at most 2 MB in a
 * Durable Object, and a batch's payloads alone may reach 2 MB.
 */
function jsonChunks(rows: unknown[][], maxChars = 512 * 1024): string[] {
  const chunks: string[] = [];
  let parts: string[] = [];
  let size = 0;
  for (const row of rows) {
    const text = JSON.stringify(row);
    if (parts.length && size + text.length > maxChars) {
      chunks.push(`[${parts.join(',')}]`);
      parts = [];
      size = 0;
    }
    parts.push(text);
    size += text.length + 1;
  }
  if (parts.length) chunks.push(`[${parts.join(',')}]`);
  return chunks;
}

/** The batch lookups of a push (exported so the query-plan test checks these very statements). */
export const PUSH_LOOKUPS = {
  loggedOps: 'SELECT op_id, server_version, fingerprint FROM change_log WHERE op_id IN (SELECT value FROM json_each(?))',
  currentRows: 'SELECT pk, clock, hlc, op_id, owner_id, size FROM rows WHERE table_name = ? AND pk IN (SELECT value FROM json_each(?))',
  dropRefs: 'DELETE FROM file_refs WHERE table_name = ? AND pk IN (SELECT value FROM json_each(?))',
  touchLosers: `UPDATE rows SET changed_version = j.value ->> 2 FROM json_each(?) AS j
    WHERE rows.table_name = j.value ->> 0 AND rows.pk = j.value ->> 1`,
} as const;

const entityKey = (table: string, pk: string) => `${table}\u0000${pk}`;

/**
 * Applies a prepared batch (its opIds are distinct: the protocol refuses repeats). Exactly one
 * result per op, in order:
 * - a replayed opId with the same fingerprint returns its original version, allocating nothing;
 *   with a different fingerprint it is a CONFLICT;
 * - every other accepted op gets the next version and a change-log row, LWW winners and losers
 *   alike; winners replace the materialized entry (a put clears a tombstone, a delete makes one),
 *   and every logged op moves its key's `changed_version`, which is what pull reads;
 * - notifications belong to their user: touching another user's is UNAUTHORIZED;
 * - a batch holding a put that would take the stored sync data over `quotaBytes` is refused
 *   whole, before anything is written (API.md "Sync storage quota"); batches of deletes only are
 *   always accepted, so a full workspace can be cleaned up.
 *
 * Set-wise, because each statement costs a fixed ~0.05–0.1 ms in the runtime whatever it does
 * (docs/performance.md): one query finds the replayed op ids, one per table reads the current
 * revisions, the decisions are made in memory in op order (later ops in the batch see earlier
 * winners), and the writes go in as a few `INSERT … SELECT … FROM json_each(?)` statements.
 * A 100-op push runs ~6 statements instead of ~500.
 */
export function applyPush(sql: SqlStorage, ops: PreparedOp[], userId: string, now: number, quotaBytes = Number.POSITIVE_INFINITY): PushOutcome | QuotaRefusal {
  let head = headVersion(sql);
  const start = head;
  const results: PushResult[] = [];
  const conflicts: ConflictEvent[] = [];

  const logged = new Map<string, { server_version: number; fingerprint: string }>();
  const ids = [...new Set(ops.map((op) => op.opId))];
  for (const r of sql.exec<{ op_id: string; server_version: number; fingerprint: string }>(PUSH_LOOKUPS.loggedOps, JSON.stringify(ids))) {
    logged.set(r.op_id, r);
  }

  // The current revision of every entity the batch touches (null: no row yet).
  const current = new Map<string, CurrentRow | null>();
  const pksByTable = new Map<string, Set<string>>();
  for (const op of ops) {
    if (logged.has(op.opId)) continue;
    current.set(entityKey(op.tableName, op.pk), null);
    const set = pksByTable.get(op.tableName) ?? new Set<string>();
    set.add(op.pk);
    pksByTable.set(op.tableName, set);
  }
  for (const [table, pks] of pksByTable) {
    for (const r of sql.exec<CurrentRow & { pk: string }>(PUSH_LOOKUPS.currentRows, table, JSON.stringify([...pks]))) {
      current.set(entityKey(table, r.pk), { clock: r.clock, hlc: r.hlc, op_id: r.op_id, owner_id: r.owner_id, size: r.size });
    }
  }

  const logRows: unknown[][] = [];
  const winners = new Map<string, { op: PreparedOp; version: number }>();
  /** The last version logged for each key in this batch, winner or loser. */
  const touched = new Map<string, { tableName: string; pk: string; version: number }>();
  /** How the stored sync data grows: every logged op, plus each winner's size over the row it replaces. */
  let growth = 0;
  for (const op of ops) {
    const before = logged.get(op.opId);
    let result: PushResult;
    if (before) {
      result = before.fingerprint === op.fingerprint ? { opId: op.opId, success: true, serverVersion: before.server_version } : conflictResult(op.opId);
    } else {
      const key = entityKey(op.tableName, op.pk);
      const stored = current.get(key) ?? null;
      if (op.tableName === NOTIFICATIONS && stored && stored.owner_id !== userId) {
        result = { opId: op.opId, success: false, error: 'This notification belongs to another user', errorCode: 'UNAUTHORIZED' };
      } else {
        head += 1;
        logRows.push([head, op.opId, op.tableName, op.pk, op.op, op.payload, op.clock, op.hlc, op.deviceId, op.fingerprint, op.bytes]);
        growth += op.bytes;
        touched.set(key, { tableName: op.tableName, pk: op.pk, version: head });
        const incoming = { clock: op.clock, hlc: op.hlc, opId: op.opId };
        const revision = stored ? { clock: stored.clock, hlc: stored.hlc, opId: stored.op_id } : null;
        if (!revision || compareRevisions(incoming, revision) > 0) {
          winners.set(key, { op, version: head });
          growth += op.bytes - (stored?.size ?? 0);
          current.set(key, { clock: op.clock, hlc: op.hlc, op_id: op.opId, owner_id: op.tableName === NOTIFICATIONS ? userId : null, size: op.bytes });
        } else {
          conflicts.push({ tableName: op.tableName, pk: op.pk, winner: revision, loser: incoming });
        }
        result = { opId: op.opId, success: true, serverVersion: head };
      }
    }
    results.push(result);
  }

  const used = syncBytes(sql);
  if (growth > 0 && used + growth > quotaBytes && ops.some((op) => op.op === 'put')) {
    return { quotaExceeded: { usedBytes: used, batchBytes: growth, quotaBytes } };
  }
  for (const chunk of jsonChunks(logRows)) {
    sql.exec(
      `INSERT INTO change_log (server_version, op_id, table_name, pk, op, payload, clock, hlc, device_id, user_id, fingerprint, created_at, size)
       SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, ?2, value ->> 9, ?3, value ->> 10
       FROM json_each(?1) ORDER BY key`,
      chunk, userId, now,
    );
  }
  materialize(sql, winners, touched, userId, now);
  if (head !== start) setMeta(sql, 'server_version', head);
  addSyncBytes(sql, growth);
  return { results, serverVersion: head, allocated: head - start, conflicts };
}

const conflictResult = (opId: string): PushResult => ({
  opId,
  success: false,
  error: 'This opId was already used for a different change',
  errorCode: 'CONFLICT',
});

/**
 * Writes the winning op of each entity into `rows` with its key's last logged version, moves
 * `changed_version` of keys whose ops in this batch all lost, and replaces the file refs of
 * messages and posts.
 */
function materialize(
  sql: SqlStorage,
  winners: Map<string, { op: PreparedOp; version: number }>,
  touched: Map<string, { tableName: string; pk: string; version: number }>,
  userId: string,
  now: number,
) {
  const rows = [...winners].map(([key, { op, version }]) => {
    const deleted = op.op === 'delete' ? 1 : 0;
    const changed = touched.get(key)!.version;
    return [op.tableName, op.pk, op.payload, op.clock, op.hlc, op.opId, version, changed, op.deviceId, deleted, deleted ? now : null, op.tableName === NOTIFICATIONS ? userId : null, op.bytes];
  });
  for (const chunk of jsonChunks(rows)) {
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
    sql.exec(
      `INSERT INTO rows (table_name, pk, payload, clock, hlc, op_id, server_version, changed_version, device_id, deleted, deleted_at, owner_id, size)
       SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12
       FROM json_each(?) WHERE true
       ON CONFLICT(table_name, pk) DO UPDATE SET payload = excluded.payload, clock = excluded.clock, hlc = excluded.hlc, op_id = excluded.op_id,
         server_version = excluded.server_version, changed_version = excluded.changed_version, device_id = excluded.device_id,
         deleted = excluded.deleted, deleted_at = excluded.deleted_at, owner_id = excluded.owner_id, size = excluded.size`,
      chunk,
    );
  }
  // Losers leave the row as it was but still count as a change of the key (API.md "Pull").
  const lostOnly = [...touched].filter(([key]) => !winners.has(key)).map(([, t]) => [t.tableName, t.pk, t.version]);
  for (const chunk of jsonChunks(lostOnly)) {
    sql.exec(PUSH_LOOKUPS.touchLosers, chunk);
  }
  const referencing = [...winners.values()].filter(({ op }) => REFERENCING_TABLES.has(op.tableName));
  for (const table of new Set(referencing.map(({ op }) => op.tableName))) {
    const pks = referencing.filter(({ op }) => op.tableName === table).map(({ op }) => op.pk);
    sql.exec(PUSH_LOOKUPS.dropRefs, table, JSON.stringify(pks));
  }
  const refs = referencing.flatMap(({ op }) => (op.op === 'put' ? (op.fileHashes ?? []).map((hash) => [hash, op.tableName, op.pk]) : []));
  for (const chunk of jsonChunks(refs)) {
    sql.exec('INSERT OR IGNORE INTO file_refs (hash, table_name, pk) SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)', chunk);
  }
}

/** Derived reference count of a blob: live messages and posts that list it in file_hashes. */
export function refCount(sql: SqlStorage, hash: string): number {
  return sql.exec<{ n: number }>('SELECT count(*) AS n FROM file_refs WHERE hash = ?', hash).one().n;
}

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
 * A compacted pull (API.md "Pull"): every key whose most recent logged op is above the cursor,
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
      input.cursor, input.userId, ...(input.tables ?? []), input.limit + 1,
    )
    .raw<ChangeRow>();
  const { page, more: hasMore } = takePage(cursor, input.limit, budget, (r) => r[1] ?? 0);
  const changesJson = `[${page.map(([, , json, filePk, filePayload]) => (filePk === null || filePayload === null ? json : `${json}${filePayloadJson(sql, filePk, filePayload)}}`)).join(',')}]`;
  const nextCursor = page.length ? page[page.length - 1]![0] : input.cursor;
  return { changesJson, count: page.length, nextCursor, hasMore, oldestRetainedVersion, requiresSnapshot: false };
}

// -- snapshot -----------------------------------------------------------------------------------

export type SnapshotItem =
  | { kind: 'row'; tableName: string; pk: string; payload: JsonObject; revision: Revision }
  | { kind: 'tombstone'; tableName: string; pk: string; revision: Revision; /** Epoch seconds. */ serverDeletedAt: number };

/**
 * One page of the materialized state after (afterTable, afterPk), ordered by (tableName, pk);
 * each entity appears once, as a row or a tombstone (SnapshotItem[] as JSON text, built like a
 * pull page). Reads one extra row to tell whether another page follows.
 */
export function snapshotPage(sql: SqlStorage, input: { after: [string, string] | null; pageSize: number; tables?: TableName[]; userId: string }, budget: number = SYNC_LIMITS.pageBytes) {
  const filter = input.tables?.length ? ` AND table_name IN (${input.tables.map(() => '?').join(', ')})` : '';
  const after = input.after ?? ['', ''];
  const cursor = sql
    .exec(
      `SELECT ${ITEM_COLUMNS} FROM rows
        WHERE (table_name, pk) > (?, ?) AND (table_name != 'notifications' OR owner_id = ?)${filter}
        ORDER BY table_name, pk LIMIT ?`,
      after[0], after[1], input.userId, ...(input.tables ?? []), input.pageSize + 1,
    )
    .raw<ItemRow>();
  const { page, more } = takePage(cursor, input.pageSize, budget, (r) => r[0] ?? 0);
  const items = page.map(([, json, filePk, filePayload, fileTail]) => (filePk === null || filePayload === null ? json : `${json}${filePayloadJson(sql, filePk, filePayload)}${fileTail}`));
  let next: [string, string] | null = null;
  if (more && items.length) {
    const last = JSON.parse(items[items.length - 1]!) as SnapshotItem;
    next = [last.tableName, last.pk];
  }
  return { itemsJson: `[${items.join(',')}]`, count: items.length, next };
}

// -- cursors ------------------------------------------------------------------------------------

export type CursorOutcome = { ok: true } | { ok: false; status: 400 | 403 | 409; code: string; message: string };

/** Forward-only per-device cursor; equal is fine, regress 409, beyond the head 400, other user's device 403. */
export function updateCursor(sql: SqlStorage, input: { deviceId: string; version: number; userId: string }, now: number): CursorOutcome {
  const head = headVersion(sql);
  if (input.version > head) return { ok: false, status: 400, code: 'cursor_ahead', message: `version ${input.version} is above the workspace's latest version ${head}` };
  const current = sql.exec<{ user_id: string; version: number }>('SELECT user_id, version FROM device_cursors WHERE device_id = ?', input.deviceId).toArray()[0];
  if (current && current.user_id !== input.userId) return { ok: false, status: 403, code: 'device_owned', message: 'This device id belongs to another user' };
  if (current && input.version < current.version) {
    return { ok: false, status: 409, code: 'cursor_regress', message: `Cursor cannot move backwards (from ${current.version} to ${input.version})` };
  }
  sql.exec(
    `INSERT INTO device_cursors (device_id, user_id, version, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
    input.deviceId, input.userId, input.version, now,
  );
  return { ok: true };
}

// -- GC -----------------------------------------------------------------------------------------

/**
 * The version GC may delete through: device cursors idle past retention are dropped first, then
 * nothing above the slowest remaining cursor may go (with no devices, nothing above the head).
 */
function safeThrough(sql: SqlStorage, cutoff: number): number {
  sql.exec('DELETE FROM device_cursors WHERE updated_at < ?', cutoff);
  const min = sql.exec<{ v: number | null }>('SELECT min(version) AS v FROM device_cursors').one().v;
  return min ?? headVersion(sql);
}

/**
 * The highest version logged before `cutoff`. The log holds the versions after the GC floor up
 * to the head, allocated in time order (with at most the gap a point-in-time restore leaves, see
 * `markRestored`), so a binary search on the primary key finds it in ~20 index seeks instead of a
 * scan: each probe reads the first logged version at or after `mid`.
 */
function lastVersionBefore(sql: SqlStorage, cutoff: number): number {
  let lo = prunedThrough(sql); // known: everything at or below is gone (treated as old)
  let hi = headVersion(sql);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const row = sql.exec<{ v: number; created_at: number }>('SELECT server_version AS v, created_at FROM change_log WHERE server_version >= ? ORDER BY server_version LIMIT 1', mid).toArray()[0];
    if (row && row.v <= hi && row.created_at < cutoff) lo = row.v;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * After a point-in-time restore, the object's head is back at `restored` while clients may
 * hold cursors up to `previousHead`, the head before the restore: they have seen changes that
 * no longer exist. This burns the versions up to `previousHead + 1` (so new changes can never
 * reuse a number a client already saw) and makes pulls from a cursor in (restored,
 * previousHead] answer `requiresSnapshot`; the snapshot's watermark is above that range.
 * Cursors at or below `restored` saw nothing that was discarded and keep pulling. Idempotent.
 */
export function markRestored(sql: SqlStorage, previousHead: number): { restoredHead: number; serverVersion: number } {
  const restoredHead = headVersion(sql);
  if (previousHead > restoredHead) {
    // Every restore adds its range: a device offline since an earlier one is still caught.
    const ranges = restoredRanges(sql);
    ranges.push([restoredHead, previousHead]);
    setMeta(sql, 'resnapshot_ranges', JSON.stringify(ranges));
    setMeta(sql, 'server_version', previousHead + 1);
  }
  return { restoredHead, serverVersion: headVersion(sql) };
}

const restoredRanges = (sql: SqlStorage): [number, number][] => JSON.parse(getMeta(sql, 'resnapshot_ranges') ?? '[]');

/**
 * Whether a cursor saw changes a point-in-time restore discarded (see `markRestored`), or is
 * beyond anything this workspace has (a restore not finished yet): either way, re-bootstrap.
 */
function sawDiscarded(sql: SqlStorage, cursor: number): boolean {
  if (cursor > headVersion(sql)) return true;
  return restoredRanges(sql).some(([after, through]) => cursor > after && cursor <= through);
}

/**
 * The next range of change-log versions GC may remove: older than the cutoff, at or below every
 * live cursor, at most `chunk` of them. Null when there is nothing to remove.
 */
export function prunableRange(sql: SqlStorage, cutoff: number, chunk: number = SYNC_LIMITS.gcChunk): { from: number; to: number; last: boolean } | null {
  const floor = prunedThrough(sql);
  const through = Math.min(safeThrough(sql, cutoff), lastVersionBefore(sql, cutoff));
  if (through <= floor) return null;
  const to = Math.min(through, floor + chunk);
  return { from: floor + 1, to, last: to === through };
}

/** The full change-log rows of a version range, for the archive. */
export function changeLogRows(sql: SqlStorage, from: number, to: number): ArchivedEntry[] {
  return sql
    .exec<{ server_version: number; op_id: string; table_name: string; pk: string; op: 'put' | 'delete'; payload: string | null; clock: number; hlc: string; device_id: string; user_id: string; fingerprint: string; created_at: number }>(
      'SELECT * FROM change_log WHERE server_version BETWEEN ? AND ? ORDER BY server_version',
      from,
      to,
    )
    .toArray()
    .map((r) => ({
      serverVersion: r.server_version,
      opId: r.op_id,
      tableName: r.table_name,
      pk: r.pk,
      op: r.op,
      payload: r.payload === null ? null : JSON.parse(r.payload),
      clock: r.clock,
      hlc: r.hlc,
      deviceId: r.device_id,
      userId: r.user_id,
      fingerprint: r.fingerprint,
      createdAt: r.created_at,
    }));
}

/** Deletes the change log through `to` and moves the GC floor there; returns how many went. */
export function pruneThrough(sql: SqlStorage, to: number): number {
  if (to <= prunedThrough(sql)) return 0;
  // rowsWritten would also count index entries, so count first.
  const gone = sql.exec<{ n: number; bytes: number }>('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM change_log WHERE server_version <= ?', to).one();
  sql.exec('DELETE FROM change_log WHERE server_version <= ?', to);
  setMeta(sql, 'pruned_through', to);
  addSyncBytes(sql, -gone.bytes);
  return gone.n;
}

/**
 * Deletes change-log entries older than the cutoff and at or below every live cursor, at most
 * `chunk` of them, without archiving (the object archives between `prunableRange` and
 * `pruneThrough`); `done` is false when another call should continue.
 */
export function gcChangeLog(sql: SqlStorage, cutoff: number, chunk: number = SYNC_LIMITS.gcChunk): { deleted: number; done: boolean } {
  const range = prunableRange(sql, cutoff, chunk);
  if (!range) return { deleted: 0, done: true };
  return { deleted: pruneThrough(sql, range.to), done: range.last };
}

/**
 * Deletes tombstones older than the cutoff whose last change every live cursor has seen, and
 * raises the pull floor (`collected_through`) to the newest of them: a device below it could
 * not learn of those deletes from a pull any more.
 */
export function gcTombstones(sql: SqlStorage, cutoff: number, chunk: number = SYNC_LIMITS.gcChunk): { deleted: number; done: boolean } {
  const safe = safeThrough(sql, cutoff);
  const victims = sql
    .exec<{ id: number; v: number; size: number }>('SELECT rowid AS id, changed_version AS v, size FROM rows WHERE deleted = 1 AND deleted_at < ? AND changed_version <= ? LIMIT ?', cutoff, safe, chunk)
    .toArray();
  for (let i = 0; i < victims.length; i += 90) {
    const ids = victims.slice(i, i + 90).map((r) => r.id);
    sql.exec(`DELETE FROM rows WHERE rowid IN (${ids.map(() => '?').join(', ')})`, ...ids);
  }
  const newest = victims.reduce((max, r) => Math.max(max, r.v), 0);
  if (newest > collectedThrough(sql)) setMeta(sql, 'collected_through', newest);
  addSyncBytes(sql, -victims.reduce((sum, r) => sum + r.size, 0));
  return { deleted: victims.length, done: victims.length < chunk };
}
