/**
 * The canonical chat reader (docs/service-api.md "Reading a thread"): a thread's live messages
 * in conversation order `(index, order_key, id)`, keyset-paged, and one row by key. Served by
 * the workspace's object from the partial expression index `rows_thread_messages_idx`
 * (migration 0005), whose expressions and WHERE clause the queries below repeat exactly, so a
 * page costs the same in a workspace of ten messages or ten million. Live: not tombstoned
 * (`deleted = 0`) and not soft-deleted (`deleted: true` in the payload, OR3's delete).
 */
import { decodeBase64urlText, encodeBase64url } from '../crypto';

export const READER_LIMITS = { defaultLimit: 100, maxLimit: 500 } as const;

const ORDER = `json_extract(payload, '$.index'), coalesce(json_extract(payload, '$.order_key'), ''), pk`;
const BASE = `FROM rows WHERE table_name = 'messages' AND deleted = 0 AND json_valid(payload) AND json_extract(payload, '$.thread_id') = ?1`;
const SORT_KEYS = `json_extract(payload, '$.index') AS i, coalesce(json_extract(payload, '$.order_key'), '') AS k`;
const LIVE = `AND coalesce(json_extract(payload, '$.deleted'), 0) = 0`;

/** The page queries (exported so a test checks their plans use the index). */
export const READER_QUERIES = {
  first: `SELECT pk, payload, ${SORT_KEYS} ${BASE} ${LIVE} ORDER BY ${ORDER} LIMIT ?2`,
  after: `SELECT pk, payload, ${SORT_KEYS} ${BASE} AND (${ORDER}) > (?3, ?4, ?5) ${LIVE} ORDER BY ${ORDER} LIMIT ?2`,
} as const;

type Sortable = number | string;
type Position = [index: Sortable, orderKey: Sortable, id: string];

/** The opaque `next` cursor: the last message's position. */
export const encodeCursor = (p: Position) => encodeBase64url(JSON.stringify(p));

const sortable = (v: unknown): v is Sortable => (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 1024);

/** A cursor's position, or null when it is not one of ours. */
export function decodeCursor(cursor: string): Position | null {
  try {
    const value = JSON.parse(decodeBase64urlText(cursor)) as unknown;
    if (Array.isArray(value) && value.length === 3 && sortable(value[0]) && sortable(value[1]) && typeof value[2] === 'string') {
      return value as Position;
    }
  } catch {
    // not base64url JSON
  }
  return null;
}

export interface MessagePage {
  messages: Record<string, unknown>[];
  next: string | null;
}

export function readMessages(sql: SqlStorage, threadId: string, after: Position | null, limit: number): MessagePage {
  type Row = { pk: string; payload: string; i: Sortable; k: Sortable };
  const rows = after
    ? sql.exec<Row>(READER_QUERIES.after, threadId, limit + 1, after[0], after[1], after[2]).toArray()
    : sql.exec<Row>(READER_QUERIES.first, threadId, limit + 1).toArray();
  const more = rows.length > limit;
  const page = rows.slice(0, limit).map((r) => JSON.parse(r.payload) as Record<string, unknown>);
  const last = rows[limit - 1];
  const next = more && last ? encodeCursor([last.i, last.k, last.pk]) : null;
  return { messages: page, next };
}

/** One live row (its payload and the version of its winning write), or null for an absent or deleted one. */
export function readRow(sql: SqlStorage, table: string, pk: string): { row: Record<string, unknown>; serverVersion: number } | null {
  const found = sql
    .exec<{ payload: string | null; server_version: number }>(
      'SELECT payload, server_version FROM rows WHERE table_name = ? AND pk = ? AND deleted = 0',
      table,
      pk,
    )
    .toArray()[0];
  return found?.payload ? { row: JSON.parse(found.payload) as Record<string, unknown>, serverVersion: found.server_version } : null;
}
