/**
 * Imports into the workspace database (docs/admin.md "Import"): after an import stream's history
 * is replayed (recovery.ts `replayHistory`), its state items, each applied only where it beats
 * the current winner. So a stream whose log was garbage-collected at its source (OR3's
 * materialized `s_*` tables) still reproduces every row and tombstone with its original revision
 * (clock, hlc, opId), and importing the same stream twice changes nothing.
 */
import type { ArchivedEntry } from './history-archive';
import { rowFlags } from '../../protocol/capabilities';
import { storedOpId } from '../../protocol/legacy-op-ids';
import { compareRevisions, type PreparedOp, type TableName } from '../../protocol/rules';
import { headVersion } from './meta';
import { applyPush, PUSH_LOOKUPS, type Revision } from './push';
import { replayHistory, type ReplayOutcome } from './recovery';

/** A row or tombstone of an import stream, prepared in the Worker (validated, canonical, fingerprinted). */
export interface ImportedItem {
  kind: 'row' | 'tombstone';
  tableName: TableName;
  pk: string;
  /** Canonical JSON as stored; null for a tombstone. */
  payload: string | null;
  clock: number;
  hlc: string;
  opId: string;
  deviceId: string;
  /** Whose it is (a notification's owner), or who is credited with it in the change log. */
  userId: string;
  fingerprint: string;
  /** For messages and posts: the blob hashes a live row references. */
  fileHashes: string[] | null;
  bytes: number;
  /** A tombstone's deletion time (epoch ms): it keeps its source's `serverDeletedAt`. */
  deletedAt: number | null;
}

/** Per kind: items applied, and items unchanged (already the winner, or beaten by a newer revision here). */
export interface StateOutcome {
  rows: { applied: number; unchanged: number };
  tombstones: { applied: number; unchanged: number };
  refused: { tableName: string; pk: string; reason: string }[];
}

export interface ImportOutcome {
  /** Entries given (what a fork reports). */
  imported: number;
  serverVersion: number;
  changes: ReplayOutcome;
  state: StateOutcome;
}

/** One import batch, inside the caller's transaction: the history first, then the state items. */
export function importBatch(sql: SqlStorage, entries: ArchivedEntry[], items: ImportedItem[], now: number): ImportOutcome {
  const changes = replayHistory(sql, entries);
  const state = importState(sql, items, now);
  return { imported: entries.length, serverVersion: headVersion(sql), changes, state };
}

/**
 * Applies each item whose revision is greater than the stored one (or that has no entry yet) and
 * whose opId is not in the change log, through the push logic: it is logged under a new version
 * (so pulls deliver it) and materialized with its own revision, references and owner.
 */
export function importState(sql: SqlStorage, items: ImportedItem[], now: number): StateOutcome {
  const outcome: StateOutcome = { rows: { applied: 0, unchanged: 0 }, tombstones: { applied: 0, unchanged: 0 }, refused: [] };
  if (!items.length) return outcome;
  const logged = new Set<string>();
  for (const r of sql.exec<{ op_id: string }>(PUSH_LOOKUPS.loggedOps, JSON.stringify([...new Set(items.map((i) => storedOpId(i.opId)))]))) logged.add(r.op_id);
  const current = new Map<string, Revision>();
  const key = (table: string, pk: string) => `${table}\u0000${pk}`;
  for (const table of new Set(items.map((i) => i.tableName))) {
    const pks = [...new Set(items.filter((i) => i.tableName === table).map((i) => i.pk))];
    for (const r of sql.exec<{ pk: string; clock: number; hlc: string; op_id: string }>(PUSH_LOOKUPS.currentRows, table, JSON.stringify(pks))) {
      current.set(key(table, r.pk), { clock: r.clock, hlc: r.hlc, opId: r.op_id });
    }
  }
  for (const item of items) {
    const stored = current.get(key(item.tableName, item.pk));
    const counts = item.kind === 'row' ? outcome.rows : outcome.tombstones;
    if (logged.has(storedOpId(item.opId)) || (stored && compareRevisions(item, stored) <= 0)) {
      counts.unchanged++;
      continue;
    }
    const op: PreparedOp = {
      opId: storedOpId(item.opId),
      tableName: item.tableName,
      pk: item.pk,
      op: item.kind === 'row' ? 'put' : 'delete',
      payload: item.payload,
      clock: item.clock,
      hlc: item.hlc,
      deviceId: item.deviceId,
      fingerprint: item.fingerprint,
      fileHashes: item.fileHashes,
      bytes: item.bytes,
      flags: item.payload === null ? 0 : rowFlags(item.tableName, JSON.parse(item.payload) as Record<string, unknown>),
    };
    const applied = applyPush(sql, [op], item.userId, item.deletedAt ?? now);
    const result = applied.ok ? applied.results[0] : undefined;
    if (!applied.ok || !result?.success) {
      outcome.refused.push({ tableName: item.tableName, pk: item.pk, reason: applied.ok ? (result?.error ?? 'refused') : applied.message });
      continue;
    }
    logged.add(item.opId);
    current.set(key(item.tableName, item.pk), { clock: item.clock, hlc: item.hlc, opId: item.opId });
    counts.applied++;
  }
  return outcome;
}
