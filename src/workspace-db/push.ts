/**
 * Push: applies a prepared batch to the workspace database inside one `transactionSync` (the
 * object's caller), so versions are gapless and contiguous without locks. Every statement is
 * served by an index (docs/schema.md): change_log by its rowid and unique op_id, rows by
 * (table_name, pk), file_refs by entity.
 */
import type { Revision } from '../../protocol/sync';
import { compareRevisions, REFERENCING_TABLES, type PreparedOp } from '../../protocol/rules';
import { capabilityFailure, FLAG_GENERIC_FILE } from '../../protocol/capabilities';
import { parseHash } from '../../protocol/hashes';
import { uncommittedUnderIntent } from './intents';
import type { Failure } from '../errors';
import { logEvent } from '../http/logger';
import { addSyncBytes, headVersion, setMeta, syncBytes } from './meta';
import { pokeFromOps, type PokeChanges } from './poke';

/** The revision last-write-wins compares (the wire contract's, shared with the SDK). */
export type { Revision } from '../../protocol/sync';

/**
 * The current winning revision of a key, as OR3's `PushWinnerSchema` has it: a put with its
 * payload, or a delete with the tombstone's time (epoch seconds).
 */
export type PushWinner =
  // `any`, not `unknown`: RPC's type mapping cannot carry `unknown` (reads.ts JsonObject).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  { kind: 'put'; payload: { [key: string]: any }; revision: Revision } | { kind: 'delete'; revision: Revision; serverDeletedAt: number };

/**
 * One op's answer (docs/api.md "Push results"): `replayed` for an opId that was already applied
 * (with its original version), `applied: false` and the key's current `winner` when the op does
 * not hold its key (it lost last-write-wins, now or since).
 */
export interface PushResult {
  opId: string;
  success: boolean;
  serverVersion?: number;
  error?: string;
  errorCode?: 'CONFLICT' | 'UNAUTHORIZED' | 'VALIDATION_ERROR';
  replayed?: boolean;
  applied?: boolean;
  winner?: PushWinner;
}

/** An op that lost last-write-wins against the stored revision (for the observability hook). */
export interface ConflictEvent {
  tableName: string;
  pk: string;
  winner: Revision;
  loser: Revision;
}

/** A key's winning op in this batch (its last one), and whether the key had an entry before the batch. */
export interface AppliedWrite {
  op: PreparedOp;
  version: number;
  existed: boolean;
}

export interface PushOutcome {
  ok: true;
  results: PushResult[];
  serverVersion: number;
  allocated: number;
  conflicts: ConflictEvent[];
  /** What this batch changed, for webhooks (src/webhooks/): losers and replays are not here. */
  applied: AppliedWrite[];
  /** The commit's changes for its poke, built from the ops (poke.ts); null: read them back. */
  poke: PokeChanges | null;
}

const NOTIFICATIONS = 'notifications';

type CurrentRow = {
  clock: number;
  hlc: string;
  op_id: string;
  owner_id: string | null;
  size: number;
  flags: number;
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
  currentRows: 'SELECT pk, clock, hlc, op_id, owner_id, size, flags FROM rows WHERE table_name = ? AND pk IN (SELECT value FROM json_each(?))',
  winners: 'SELECT pk, payload, clock, hlc, op_id, deleted, deleted_at FROM rows WHERE table_name = ? AND pk IN (SELECT value FROM json_each(?))',
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
 *   whole, before anything is written (docs/sync.md "Sync storage quota"); batches of deletes only are
 *   always accepted, so a full workspace can be cleaned up.
 *
 * Set-wise, because each statement costs a fixed ~0.05–0.1 ms in the runtime whatever it does
 * (docs/performance.md): one query finds the replayed op ids, one per table reads the current
 * revisions, the decisions are made in memory in op order (later ops in the batch see earlier
 * winners), and the writes go in as a few `INSERT … SELECT … FROM json_each(?)` statements.
 * A 100-op push runs ~6 statements instead of ~500.
 */
export function applyPush(
  sql: SqlStorage,
  ops: PreparedOp[],
  userId: string,
  now: number,
  quotaBytes = Number.POSITIVE_INFINITY,
  /**
   * The capability flags the pusher lacks (capabilities.ts `missingFlags`): 0 for a client that
   * has them all; null for a replay of stored history (import, fork), to which no client gate applies.
   */
  missing: number | null = null,
): PushOutcome | Failure {
  let head = headVersion(sql);
  const start = head;
  const results: PushResult[] = [];
  const conflicts: ConflictEvent[] = [];

  const logged = new Map<string, { server_version: number; fingerprint: string }>();
  const ids = [...new Set(ops.map((op) => op.opId))];
  for (const r of sql.exec<{ op_id: string; server_version: number; fingerprint: string }>(PUSH_LOOKUPS.loggedOps, JSON.stringify(ids))) {
    logged.set(r.op_id, r);
  }

  // An opId that is not a UUID is only a legacy op's replay; a new one is refused whole (docs/api.md "Legacy opIds").
  const unknownLegacy = ops.findIndex((op) => op.clientOpId !== undefined && !logged.has(op.opId));
  if (unknownLegacy >= 0) {
    return { ok: false, status: 400, code: 'invalid_body', message: `Invalid request body: ops.${unknownLegacy}.stamp.opId: must be an RFC 4122 UUID` };
  }

  // The current revision of every entity the batch touches (null: no row yet).
  const current = new Map<string, CurrentRow | null>();
  const pksByTable = new Map<string, Set<string>>();
  for (const op of ops) {
    // Replays are looked up too: their answer names the key's current winner when it moved on.
    current.set(entityKey(op.tableName, op.pk), null);
    const set = pksByTable.get(op.tableName) ?? new Set<string>();
    set.add(op.pk);
    pksByTable.set(op.tableName, set);
  }
  for (const [table, pks] of pksByTable) {
    for (const r of sql.exec<CurrentRow & { pk: string }>(PUSH_LOOKUPS.currentRows, table, JSON.stringify([...pks]))) {
      current.set(entityKey(table, r.pk), { clock: r.clock, hlc: r.hlc, op_id: r.op_id, owner_id: r.owner_id, size: r.size, flags: r.flags });
    }
  }

  // Capability gates (docs/api.md "Capabilities"): a writer may neither write nor replace a row
  // that needs a capability it lacks. Decided before anything is allocated: the batch is refused whole.
  if (missing) {
    for (const op of ops) {
      if (logged.has(op.opId)) continue;
      const refusal = capabilityFailure(op.flags | (current.get(entityKey(op.tableName, op.pk))?.flags ?? 0), missing);
      if (refusal) return refusal;
    }
  }

  // A newer client's file_meta waits for the commit of bytes it is uploading under an intent (docs/api.md "Upload intents").
  const canonicalHash = (pk: string) => parseHash(pk)?.canonical ?? pk;
  const waiting =
    missing === null || missing & FLAG_GENERIC_FILE
      ? new Set<string>()
      : uncommittedUnderIntent(
          sql,
          ops.filter((op) => op.tableName === 'file_meta' && op.op === 'put' && !logged.has(op.opId)).map((op) => canonicalHash(op.pk)),
          now,
        );

  const logRows: unknown[][] = [];
  const winners = new Map<string, AppliedWrite>();
  /** The last version logged for each key in this batch, winner or loser. */
  const touched = new Map<string, { tableName: string; pk: string; version: number }>();
  /** How the stored sync data grows: every logged op, plus each winner's size over the row it replaces. */
  let growth = 0;
  for (const op of ops) {
    const before = logged.get(op.opId);
    let result: PushResult;
    if (before) {
      result =
        before.fingerprint === op.fingerprint
          ? { opId: op.opId, success: true, serverVersion: before.server_version, replayed: true }
          : conflictResult(op.opId);
    } else {
      const key = entityKey(op.tableName, op.pk);
      const stored = current.get(key) ?? null;
      if (op.tableName === NOTIFICATIONS && stored && stored.owner_id !== userId) {
        result = { opId: op.opId, success: false, error: 'This notification belongs to another user', errorCode: 'UNAUTHORIZED' };
      } else if (waiting.size && op.tableName === 'file_meta' && op.op === 'put' && waiting.has(canonicalHash(op.pk))) {
        result = {
          opId: op.opId,
          success: false,
          error: 'The bytes of this file were never committed; commit the upload first',
          errorCode: 'VALIDATION_ERROR',
        };
      } else {
        head += 1;
        logRows.push([head, op.opId, op.tableName, op.pk, op.op, op.payload, op.clock, op.hlc, op.deviceId, op.fingerprint, op.bytes]);
        growth += op.bytes;
        touched.set(key, { tableName: op.tableName, pk: op.pk, version: head });
        const incoming = { clock: op.clock, hlc: op.hlc, opId: op.opId };
        const revision = stored ? { clock: stored.clock, hlc: stored.hlc, opId: stored.op_id } : null;
        if (!revision || compareRevisions(incoming, revision) > 0) {
          winners.set(key, { op, version: head, existed: winners.get(key)?.existed ?? stored !== null });
          growth += op.bytes - (stored?.size ?? 0);
          current.set(key, {
            clock: op.clock,
            hlc: op.hlc,
            op_id: op.opId,
            owner_id: op.tableName === NOTIFICATIONS ? userId : null,
            size: op.bytes,
            flags: op.flags,
          });
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
    const message = `This workspace's synced data is at its quota (${used} of ${quotaBytes} bytes; this push needs ${growth} more). Delete rows, or ask the operator to raise OR3_SYNC_WORKSPACE_QUOTA_BYTES`;
    return { ok: false, status: 413, code: 'quota_exceeded', message };
  }
  for (const chunk of jsonChunks(logRows)) {
    sql.exec(
      `INSERT INTO change_log (server_version, op_id, table_name, pk, op, payload, clock, hlc, device_id, user_id, fingerprint, created_at, size)
       SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, ?2, value ->> 9, ?3, value ->> 10
       FROM json_each(?1) ORDER BY key`,
      chunk,
      userId,
      now,
    );
  }
  materialize(sql, winners, touched, userId, now);
  if (head !== start) setMeta(sql, 'server_version', head);
  addSyncBytes(sql, growth);
  markWinners(sql, ops, results, current);
  ops.forEach((op, i) => {
    if (op.clientOpId !== undefined) results[i]!.opId = op.clientOpId;
  });
  const poke = head !== start ? pokeFromOps(winners, touched) : null;
  return { ok: true, results, serverVersion: head, allocated: head - start, conflicts, applied: [...winners.values()], poke };
}

type WinnerRow = { pk: string; payload: string | null; clock: number; hlc: string; op_id: string; deleted: number; deleted_at: number | null };

/**
 * Completes the successful results as OR3's refinements want them (docs/api.md "Push results"):
 * `applied` says whether the op holds its key after the batch; one that does not carries the
 * key's current `winner`, read back from the rows just written (one query per table, only for
 * the keys that need it).
 */
function markWinners(sql: SqlStorage, ops: PreparedOp[], results: PushResult[], current: Map<string, CurrentRow | null>) {
  const needed = new Map<string, Set<string>>();
  ops.forEach((op, i) => {
    const result = results[i]!;
    if (!result.success) return;
    result.applied = current.get(entityKey(op.tableName, op.pk))?.op_id === op.opId;
    if (!result.applied) needed.set(op.tableName, (needed.get(op.tableName) ?? new Set()).add(op.pk));
  });
  if (!needed.size) return;
  const found = new Map<string, PushWinner>();
  for (const [table, pks] of needed) {
    for (const r of sql.exec<WinnerRow>(PUSH_LOOKUPS.winners, table, JSON.stringify([...pks]))) {
      const revision = { clock: r.clock, hlc: r.hlc, opId: r.op_id };
      found.set(
        entityKey(table, r.pk),
        r.deleted
          ? { kind: 'delete', revision, serverDeletedAt: Math.floor((r.deleted_at ?? 0) / 1000) }
          : { kind: 'put', payload: JSON.parse(r.payload ?? '{}') as Record<string, never>, revision },
      );
    }
  }
  ops.forEach((op, i) => {
    const winner = results[i]!.applied === false ? found.get(entityKey(op.tableName, op.pk)) : undefined;
    if (winner) results[i]!.winner = winner;
  });
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
    return [
      op.tableName,
      op.pk,
      op.payload,
      op.clock,
      op.hlc,
      op.opId,
      version,
      changed,
      op.deviceId,
      deleted,
      deleted ? now : null,
      op.tableName === NOTIFICATIONS ? userId : null,
      op.bytes,
      op.flags,
    ];
  });
  for (const chunk of jsonChunks(rows)) {
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
    sql.exec(
      `INSERT INTO rows (table_name, pk, payload, clock, hlc, op_id, server_version, changed_version, device_id, deleted, deleted_at, owner_id, size, flags)
       SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13
       FROM json_each(?) WHERE true
       ON CONFLICT(table_name, pk) DO UPDATE SET payload = excluded.payload, clock = excluded.clock, hlc = excluded.hlc, op_id = excluded.op_id,
         server_version = excluded.server_version, changed_version = excluded.changed_version, device_id = excluded.device_id,
         deleted = excluded.deleted, deleted_at = excluded.deleted_at, owner_id = excluded.owner_id, size = excluded.size, flags = excluded.flags`,
      chunk,
    );
  }
  // Losers leave the row as it was but still count as a change of the key (docs/sync.md "The model").
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

/** Each op that lost last-write-wins, as a `sync_conflict` log event with both revisions (docs/sync.md). */
export function logConflicts(workspaceId: string, conflicts: ConflictEvent[]) {
  for (const c of conflicts) logEvent('info', 'sync_conflict', { workspaceId, tableName: c.tableName, pk: c.pk, winner: c.winner, loser: c.loser });
}
