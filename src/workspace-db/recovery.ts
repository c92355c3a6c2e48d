/**
 * Recovery of the workspace database: point-in-time restore (docs/operations.md; production
 * only, local workerd has no bookmarks) and the replay of history that fork and import use. The
 * export's pages are in exports.ts.
 */
import type { ArchivedEntry } from './history-archive';
import { rowFlags } from '../../protocol/capabilities';
import { storedOpId } from '../../protocol/legacy-op-ids';
import { canonicalJson, entryBytes, REFERENCING_TABLES, referencedHashes, type PreparedOp, type TableName } from '../../protocol/rules';
import type { Failure } from '../errors';
import { headVersion, restoredRanges, setMeta } from './meta';
import { applyPush } from './push';

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

// -- point-in-time restore --------------------------------------------------------------------

/**
 * PITR step 1: asks the runtime to restore the database to `at` (epoch ms) when the object next
 * starts, and returns the head now (for step 3) and the undo bookmark. `beforeRewind` runs
 * first: from then on nothing may be served (a write accepted now would be discarded by the
 * rewind, and its version number handed out again).
 */
export async function preparePitr(
  storage: DurableObjectStorage,
  at: number,
  hold: (restoring: boolean) => void,
): Promise<{ ok: true; previousHead: number; bookmark: string; undoBookmark: string } | Failure> {
  const pitr = storage as DurableObjectStorage & { getBookmarkForTime?: unknown };
  if (typeof pitr.getBookmarkForTime !== 'function')
    return {
      ok: false,
      status: 501,
      code: 'pitr_unsupported',
      message: 'This runtime has no point-in-time recovery (it exists only on Cloudflare, not in local workerd)',
    };
  hold(true);
  try {
    const bookmark = await storage.getBookmarkForTime(at);
    const undoBookmark = await storage.onNextSessionRestoreBookmark(bookmark);
    return { ok: true, previousHead: headVersion(storage.sql), bookmark, undoBookmark };
  } catch (err) {
    hold(false);
    return { ok: false, status: 501, code: 'pitr_unsupported', message: `Point-in-time recovery failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

// -- fork and import --------------------------------------------------------------------------

/** What a replay did: entries that took a version, entries already logged, and refusals. */
export interface ReplayOutcome {
  applied: number;
  unchanged: number;
  /** An opId already logged with another fingerprint, or another user's notification. */
  refused: { opId: string; reason: string }[];
}

/**
 * Replays history into this workspace, inside the caller's transaction: each entry goes
 * through the same push logic (idempotency, last-write-wins, derived refs) as its original
 * author, at its original time (deletion times and GC retention stay those of the real writes),
 * so the rows equal the source's where the history stops. Versions are allocated anew; an entry
 * whose opId is already logged allocates nothing, so replaying twice changes nothing. No quota
 * applies (a replay reproduces data the source already holds).
 */
export function replayHistory(sql: SqlStorage, entries: ArchivedEntry[]): ReplayOutcome {
  const outcome: ReplayOutcome = { applied: 0, unchanged: 0, refused: [] };
  for (const e of entries) {
    const payload = e.payload === null ? null : canonicalJson(e.payload);
    const live = e.payload !== null && !(e.payload.deleted === true || e.payload.deleted === 1);
    const fileHashes = REFERENCING_TABLES.has(e.tableName) && e.op === 'put' ? (live ? referencedHashes(e.payload?.file_hashes) : []) : null;
    const op: PreparedOp = {
      opId: storedOpId(e.opId),
      tableName: e.tableName as TableName,
      pk: e.pk,
      op: e.op,
      payload,
      clock: e.clock,
      hlc: e.hlc,
      deviceId: e.deviceId,
      fingerprint: e.fingerprint,
      fileHashes,
      bytes: entryBytes(payload, e.pk, e.hlc, e.deviceId),
      flags: e.op === 'put' ? rowFlags(e.tableName, e.payload) : 0,
    };
    const result = applyPush(sql, [op], e.userId, e.createdAt);
    const first = result.ok ? result.results[0] : undefined;
    if (result.ok && result.allocated > 0) outcome.applied++;
    else if (first?.success) outcome.unchanged++;
    else outcome.refused.push({ opId: e.opId, reason: first?.error ?? (result.ok ? 'refused' : result.message) });
  }
  return outcome;
}
