/**
 * The sync wire contract's rules (docs/sync.md): request envelopes, the table allow-list,
 * per-table payload rules, and the preparation of a push batch into the ops the Durable Object
 * applies. Pure (zod and Web Crypto only) and shared by every way in: the Worker runs it for an
 * HTTP push before the workspace's object is called (src/sync/routes.ts), so that validation,
 * canonical JSON and fingerprints cost the serial object nothing; a push over the socket has no
 * Worker in front of it, so the object runs the same preparation for it (src/workspace-db/
 * socket-sync.ts), as it does for a service token's push (src/service/serve.ts). Refusals are
 * `WireError`s (errors.ts) with the HTTP status and code either transport answers with.
 */
import * as z from 'zod';
import { invalid as badRequest, tooLarge as payloadTooLarge } from './errors';
import { parseHash, sha256Hex } from './hashes';
import { TABLES, type TableName } from './sync';
import { SOCKET_SYNC_LIMITS } from './socket';
import { capabilityField, rowFlags } from './capabilities';
import { isUuid, legacyOpUuid } from './legacy-op-ids';
import { canonicalJson, TooDeep } from './canonical';

export { canonicalJson, TooDeep } from './canonical';

export const SYNC_LIMITS = {
  maxOps: 100,
  maxBatchBytes: 2 * 1024 * 1024,
  maxPayloadBytes: 256 * 1024,
  /**
   * Nesting levels of a payload (the payload object itself is level 1). Chat rows are a few
   * levels deep; unbounded nesting overflowed the stack (500) and, stored at 2,000 levels, could
   * no longer cross an RPC boundary, which broke fork. docs/sync.md "Limits".
   */
  maxPayloadDepth: 64,
  pullDefault: 100,
  pullMax: 1000,
  maxTables: 50,
  snapshotDefault: 500,
  snapshotMax: 1000,
  retentionMinSeconds: 3600,
  retentionMaxSeconds: 365 * 24 * 3600,
  /**
   * Payload bytes in one pull or snapshot page. Rows may be 256 KB each, so a page of 1000 could
   * pass the 32 MiB RPC limit and the isolate's 128 MB; pages stop early instead (always at
   * least one item) and say there is more.
   */
  pageBytes: 8 * 1024 * 1024,
  /** Change-log entries deleted per GC transaction, so one transaction stays small. */
  gcChunk: 10_000,
} as const;

// The table list, the revision order and the socket's bounds are the wire contract's, shared with the SDK.
export { compareRevisions, TABLES, type TableName } from './sync';
export { SOCKET_SYNC_LIMITS } from './socket';

/** Tables whose rows reference blobs through `file_hashes`. */
export const REFERENCING_TABLES: ReadonlySet<string> = new Set(['messages', 'posts']);

// ---------------------------------------------------------------------------------------------
// Envelopes (strict: unknown fields are a 400 naming them)

/**
 * Keys are stored as SQLite text (UTF-8), where a lone UTF-16 surrogate cannot survive: the row
 * would come back under a different key than the client wrote. Refused instead.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !LONE_SURROGATE.test(s), 'must be valid Unicode text');
const id = text(256);
/**
 * Any text here: an opId that is not an RFC 4122 UUID is taken only as the replay of a legacy op
 * (mapped to its deterministic UUID, legacy-op-ids.ts); the workspace's object refuses it with a
 * 400 unless that op is already logged (docs/api.md "Legacy opIds").
 */
const opIdSchema = text(256);
export const scopeSchema = z.strictObject({ workspaceId: id, projectId: id.optional() });
const tables = z.array(z.enum(TABLES)).max(SYNC_LIMITS.maxTables).optional();

export const stampSchema = z.strictObject({
  deviceId: text(128),
  opId: opIdSchema,
  hlc: text(128),
  clock: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/** A queued op. OR3 clients send extra queue fields (id, createdAt, attempts, status…): tolerated. */
export const pushOpSchema = z.looseObject({
  tableName: z.string().min(1).max(64),
  operation: z.enum(['put', 'delete']),
  pk: id,
  payload: z.record(z.string(), z.unknown()).optional().nullable(),
  stamp: stampSchema,
});

/** A batch of ops, at most `max`. Newer OR3 clients reject a push response that repeats an opId, so such a batch is refused whole (docs/sync.md "Guarantees") rather than answered with a mirrored result. */
const opsSchema = (max: number) =>
  z
    .array(pushOpSchema)
    .max(max, `at most ${max} ops per push`)
    .superRefine((ops, ctx) => {
      const seen = new Set<string>();
      for (const [i, op] of ops.entries()) {
        if (seen.has(op.stamp.opId))
          ctx.addIssue({ code: 'custom', path: [i, 'stamp', 'opId'], message: `repeats an earlier opId of this batch (${op.stamp.opId})` });
        seen.add(op.stamp.opId);
      }
    });

/** What newer OR3 clients declare on pull, snapshot and push (docs/api.md "Capabilities"): 'v1' or nothing. */
const capabilities = { fileKindCapability: capabilityField, workspaceItemCapability: capabilityField };

export const pushSchema = z.strictObject({ scope: scopeSchema, ops: opsSchema(SYNC_LIMITS.maxOps), ...capabilities });
/**
 * Sync over the workspace's socket (docs/sync.md "Sync over the socket"): the same rules as the
 * HTTP routes, with a larger batch per message (a device catching up sends few messages); the
 * messages' types and bounds are the wire contract's (protocol/socket.ts).
 */
const messageId = z.string().min(1).max(SOCKET_SYNC_LIMITS.idLength);
export const socketSyncMessage = z.discriminatedUnion('type', [
  // `echo: false`: the pusher's poke carries none of its own changes (its push-result answers for them).
  z.strictObject({ type: z.literal('push'), id: messageId, ops: opsSchema(SOCKET_SYNC_LIMITS.maxOps), echo: z.literal(false).optional() }),
  z.strictObject({
    type: z.literal('pull'),
    id: messageId,
    cursor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    limit: z.number().int().min(1).max(SYNC_LIMITS.pullMax).optional(),
    tables,
    window: z.number().int().min(1).max(SOCKET_SYNC_LIMITS.maxWindow).optional(),
  }),
  z.strictObject({ type: z.literal('ack'), id: messageId, cursor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  // The HTTP update-cursor's fields, without the scope (the socket's workspace).
  z.strictObject({
    type: z.literal('cursor'),
    id: messageId,
    deviceId: z.string().min(1).max(128),
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
]);
export type SocketSyncMessage = z.output<typeof socketSyncMessage>;

export const pullSchema = z.strictObject({
  scope: scopeSchema,
  cursor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  limit: z.number().int().min(1).max(SYNC_LIMITS.pullMax).optional(),
  tables,
  ...capabilities,
});
export const cursorSchema = z.strictObject({
  scope: scopeSchema,
  deviceId: z.string().min(1).max(128),
  version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export const snapshotSchema = z.strictObject({
  scope: scopeSchema,
  pageSize: z.number().int().min(1).max(SYNC_LIMITS.snapshotMax).optional(),
  pageToken: z.string().min(1).max(2048).optional(),
  tables,
  ...capabilities,
});
export const gcSchema = z.strictObject({
  scope: scopeSchema,
  retentionSeconds: z.number().int().min(SYNC_LIMITS.retentionMinSeconds).max(SYNC_LIMITS.retentionMaxSeconds),
});
export const wsTicketSchema = z.strictObject({ workspaceId: id });

// ---------------------------------------------------------------------------------------------
// Table payloads (docs/sync.md "Guarantees", validation): required fields and their types. Other columns are
// allowed: a newer client may add them.

const flag = z.union([z.boolean(), z.literal(0), z.literal(1)]);
const seconds = z.number().min(0);
const clock = z.number().int().min(0);
const str = z.string();
const common = { deleted: flag, created_at: seconds, updated_at: seconds, clock };

/** Optional text or null. */
const nullableText = z.string().nullable().optional();

const payloadSchemas: Record<TableName, z.ZodType> = {
  // The branching fields of OR3's newest ThreadPayloadSchema: optional, but its clients refuse other values.
  threads: z.looseObject({
    id: str,
    status: str,
    pinned: flag,
    ...common,
    branch_mode: z.enum(['reference', 'copy', 'compacted']).nullable().optional(),
    root_thread_id: nullableText,
    summary_message_id: nullableText,
    fork_reason: z.enum(['manual', 'retry', 'compaction']).optional(),
  }),
  messages: z.looseObject({ id: str, thread_id: str, role: str, index: z.number(), order_key: str, ...common }),
  projects: z.looseObject({ id: str, name: str, ...common }),
  posts: z.looseObject({ id: str, title: str, content: str, post_type: str, ...common }),
  kv: z.looseObject({ id: str, name: str, created_at: seconds, updated_at: seconds, clock, value: z.string().nullable().optional(), deleted: flag.optional() }),
  file_meta: z.looseObject({ hash: str, ...common }),
  notifications: z.looseObject({ id: str, user_id: str, type: str, title: str, ...common }),
};

/** Fields the server derives or keeps in columns: never stored from a client payload. */
const SERVER_FIELDS = ['hlc', 'ref_count'];

export interface PreparedOp {
  /** The opId as stored: a UUID (a legacy one mapped, legacy-op-ids.ts). */
  opId: string;
  /** The client's own opId when it is not a UUID (a legacy op's replay): results echo it. */
  clientOpId?: string;
  tableName: TableName;
  pk: string;
  op: 'put' | 'delete';
  /** Canonical JSON of the payload as stored (server fields removed), or null for deletes. */
  payload: string | null;
  clock: number;
  hlc: string;
  deviceId: string;
  fingerprint: string;
  /** For messages/posts puts: the blob hashes a live row references ([] when none or deleted). */
  fileHashes: string[] | null;
  /** What one stored copy of this op counts towards the sync storage quota (`entryBytes`). */
  bytes: number;
  /** The capabilities its payload needs of readers and writers (capabilities.ts `rowFlags`); 0 for deletes. */
  flags: number;
}

/**
 * Bytes a stored entry (a change-log row, or a materialized row) counts towards the sync quota:
 * the UTF-8 size of its payload and keys, plus a fixed allowance for the ids, fingerprint,
 * integers and index entries every entry carries. The same formula is applied in SQL by
 * migration 0004 (`length(CAST(x AS BLOB))`), so the running total and a recount agree.
 */
export const ENTRY_OVERHEAD_BYTES = 160;

export function entryBytes(payload: string | null, pk: string, hlc: string, deviceId: string, payloadBytes?: number): number {
  return (payloadBytes ?? (payload === null ? 0 : utf8Length(payload))) + utf8Length(pk) + utf8Length(hlc) + utf8Length(deviceId) + ENTRY_OVERHEAD_BYTES;
}

/** UTF-8 length of well-formed text (keys are refused with lone surrogates), without encoding it. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4;
      i++; // the low surrogate of the pair
    } else bytes += 3;
  }
  return bytes;
}

export type PushOpInput = z.output<typeof pushOpSchema>;

const encoder = new TextEncoder();

/**
 * The idempotency fingerprint's text: (tableName, operation, pk, payload, clock, hlc, deviceId),
 * given the payload's canonical JSON. Exactly
 * `canonicalJson([tableName, operation, pk, payload, clock, hlc, deviceId])`, without sorting and
 * serializing the payload a second time (stored fingerprints must never change).
 */
function fingerprintInput(op: PushOpInput, canonicalPayload: string): string {
  return fingerprintText(op.tableName, op.operation, op.pk, canonicalPayload, op.stamp.clock, op.stamp.hlc, op.stamp.deviceId);
}

/** The fingerprint text of any op (an import computes it for history that arrives without one). */
export function fingerprintText(
  tableName: string,
  operation: string,
  pk: string,
  canonicalPayload: string,
  clock: number,
  hlc: string,
  deviceId: string,
): string {
  const j = JSON.stringify;
  return `[${j(tableName)},${j(operation)},${j(pk)},${canonicalPayload},${j(clock)},${j(hlc)},${j(deviceId)}]`;
}

const invalid = (table: string, why: string) => badRequest(`Invalid payload for ${table}: ${why}`, 'invalid_payload');

function isLive(payload: Record<string, unknown>): boolean {
  return !(payload.deleted === true || payload.deleted === 1);
}

/** Why a put's payload breaks its table's rules (required fields and types, key, workspace), or null. */
function shapeProblem(table: TableName, pk: string, payload: Record<string, unknown>, workspaceId: string): string | null {
  const parsed = payloadSchemas[table].safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return `${issue.path.join('.') || 'payload'} ${issue.message}`;
  }
  const keyField = table === 'file_meta' ? 'hash' : 'id';
  if (payload[keyField] !== pk) return `payload.${keyField} must equal pk`;
  if (payload.workspace_id !== undefined && payload.workspace_id !== workspaceId) return 'workspace_id does not match the scope';
  return null;
}

/**
 * The push rules for one stored op, for data that arrives another way (an import): the table
 * allow-list, nesting depth, size and shape, as `Invalid payload for <table>: …`; null when it
 * passes. Returns the payload as push stores it (canonical JSON, server fields removed) and as the
 * fingerprint reads it (canonical JSON of the payload as given).
 */
export function checkStoredOp(
  tableName: string,
  pk: string,
  payload: Record<string, unknown> | null,
  workspaceId: string,
): { ok: true; table: TableName; stored: string | null; canonical: string } | { ok: false; problem: string } {
  if (!(TABLES as readonly string[]).includes(tableName)) return { ok: false, problem: `Invalid payload for ${tableName.slice(0, 64)}: unknown table` };
  const table = tableName as TableName;
  if (payload === null) return { ok: true, table, stored: null, canonical: 'null' };
  let canonical: string;
  try {
    canonical = canonicalJson(payload, SYNC_LIMITS.maxPayloadDepth);
  } catch (err) {
    if (err instanceof TooDeep) return { ok: false, problem: `Invalid payload for ${table}: ${err.message}` };
    throw err;
  }
  if (encoder.encode(canonical).byteLength > SYNC_LIMITS.maxPayloadBytes)
    return { ok: false, problem: `Invalid payload for ${table}: larger than ${SYNC_LIMITS.maxPayloadBytes} bytes` };
  const problem = shapeProblem(table, pk, payload, workspaceId);
  if (problem) return { ok: false, problem: `Invalid payload for ${table}: ${problem}` };
  if (!SERVER_FIELDS.some((field) => field in payload)) return { ok: true, table, stored: canonical, canonical };
  const kept = { ...payload };
  for (const field of SERVER_FIELDS) delete kept[field];
  return { ok: true, table, stored: canonicalJson(kept), canonical };
}

/** The canonical blob hashes a stored payload's file_hashes lists (lenient: for replays of stored data). */
export function referencedHashes(raw: unknown): string[] {
  try {
    return parseFileHashes('history', raw);
  } catch {
    return [];
  }
}

function parseFileHashes(table: string, raw: unknown): string[] {
  if (raw === undefined || raw === null || raw === '') return [];
  let list: unknown = raw;
  if (typeof raw === 'string') {
    try {
      list = JSON.parse(raw);
    } catch {
      throw invalid(table, 'file_hashes must be a JSON array of hashes');
    }
  }
  if (!Array.isArray(list) || list.length > 1000 || !list.every((h) => typeof h === 'string' && h.length > 0 && h.length <= 128)) {
    throw invalid(table, 'file_hashes must be a JSON array of hashes');
  }
  // Stored canonically, so reference counts match however a client spells a hash.
  return [...new Set((list as string[]).map((h) => parseHash(h)?.canonical ?? h))];
}

/**
 * Validates a whole batch and prepares it. One bad op rejects the batch (400
 * `Invalid payload for <table>: …`), so nothing is written for a batch a client must fix.
 */
export async function prepareBatch(
  ops: PushOpInput[],
  workspaceId: string,
  callerId: string,
  maxBatchBytes: number = SYNC_LIMITS.maxBatchBytes,
): Promise<PreparedOp[]> {
  let batchBytes = 0;
  const prepared: PreparedOp[] = [];
  const fingerprints: Promise<string>[] = [];
  for (const op of ops) {
    if (!(TABLES as readonly string[]).includes(op.tableName)) {
      throw invalid(op.tableName.slice(0, 64), `unknown table; allowed: ${TABLES.join(', ')}`);
    }
    const table = op.tableName as TableName;
    let stored: string | null = null;
    let storedBytes = 0;
    let fileHashes: string[] | null = null;
    let flags = 0;
    // Each payload is sorted and serialized once; the size check, the fingerprint and (when the
    // server changes nothing) the stored text all use that one string.
    let canonical: string;
    try {
      canonical = canonicalJson(op.payload ?? null, SYNC_LIMITS.maxPayloadDepth);
    } catch (err) {
      if (err instanceof TooDeep) throw invalid(table, err.message);
      throw err;
    }
    if (op.operation === 'put') {
      if (!op.payload) throw invalid(table, 'a put needs a payload object');
      const bytes = encoder.encode(canonical).byteLength;
      // 400, not 413: OR3's contract counts an oversized payload as a bad payload (docs/sync.md "Limits"), which clients treat as permanent.
      if (bytes > SYNC_LIMITS.maxPayloadBytes) throw invalid(table, `larger than ${SYNC_LIMITS.maxPayloadBytes} bytes`);
      batchBytes += bytes;
      const problem = shapeProblem(table, op.pk, op.payload, workspaceId);
      if (problem) throw invalid(table, problem);
      const rewrite = table === 'notifications' || SERVER_FIELDS.some((field) => field in op.payload!);
      let payload: Record<string, unknown> = op.payload;
      if (rewrite) {
        payload = { ...op.payload };
        for (const field of SERVER_FIELDS) delete payload[field];
        if (table === 'notifications') payload.user_id = callerId;
      }
      stored = rewrite ? canonicalJson(payload) : canonical;
      storedBytes = rewrite ? utf8Length(stored) : bytes;
      if (REFERENCING_TABLES.has(table)) fileHashes = isLive(payload) ? parseFileHashes(table, payload.file_hashes) : [];
      flags = rowFlags(table, payload);
    }
    if (batchBytes > maxBatchBytes) throw payloadTooLarge(`Push batch larger than ${maxBatchBytes} bytes`);
    fingerprints.push(sha256Hex(fingerprintInput(op, canonical)));
    const legacy = !isUuid(op.stamp.opId);
    prepared.push({
      opId: legacy ? legacyOpUuid(op.stamp.opId) : op.stamp.opId,
      ...(legacy ? { clientOpId: op.stamp.opId } : {}),
      tableName: table,
      pk: op.pk,
      op: op.operation,
      payload: stored,
      clock: op.stamp.clock,
      hlc: op.stamp.hlc,
      deviceId: op.stamp.deviceId,
      fingerprint: '',
      fileHashes,
      bytes: entryBytes(stored, op.pk, op.stamp.hlc, op.stamp.deviceId, storedBytes),
      flags,
    });
  }
  // The digests run together rather than one await per op.
  const digests = await Promise.all(fingerprints);
  prepared.forEach((p, i) => (p.fingerprint = digests[i]!));
  return prepared;
}
