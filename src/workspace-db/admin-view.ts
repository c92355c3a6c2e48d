/**
 * What the admin console shows of one workspace besides D1's facts (docs/admin.md "Workspaces"):
 * its stored usage, how far GC has archived and pruned its history, when GC runs next, and the
 * sockets open now. Read-only, one RPC (`WorkspaceDO.adminView`) with the usage counters.
 */
import { blobCount, usedBytes } from './blobs';
import { collectedThrough, getMeta, headVersion, prunedThrough, syncBytes } from './meta';

export interface WorkspaceState {
  /** The highest server_version allocated. */
  headVersion: number;
  /** Change-log entries at or below this version were archived to R2 and pruned by retention GC. */
  archivedThrough: number;
  /** Tombstones up to this version were collected: a pull from below it needs a snapshot. */
  tombstonesCollectedThrough: number;
  /** When retention GC runs next (ISO); null when nothing is scheduled. */
  nextGcAt: string | null;
  /** When blob GC last ran (ISO); null when never. */
  lastBlobGcAt: string | null;
  usedBytes: number;
  blobCount: number;
  syncBytes: number;
  socketsOpen: number;
}

const iso = (ms: number | null) => (ms === null || !Number.isFinite(ms) || ms <= 0 ? null : new Date(ms).toISOString());

export async function workspaceState(ctx: DurableObjectState): Promise<WorkspaceState> {
  const sql = ctx.storage.sql;
  // GC's time waits in meta while the alarm serves the presence sweep (alarm.ts); else the alarm is GC's.
  const deferred = getMeta(sql, 'gc_due_at');
  const nextGc = deferred === null ? await ctx.storage.getAlarm() : deferred === '' ? null : Number(deferred);
  return {
    headVersion: headVersion(sql),
    archivedThrough: prunedThrough(sql),
    tombstonesCollectedThrough: collectedThrough(sql),
    nextGcAt: iso(nextGc),
    lastBlobGcAt: iso(Number(getMeta(sql, 'blob_gc_at') ?? 0)),
    usedBytes: usedBytes(sql),
    blobCount: blobCount(sql),
    syncBytes: syncBytes(sql),
    socketsOpen: ctx.getWebSockets().length,
  };
}
