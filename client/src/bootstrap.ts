/**
 * Snapshot bootstrap, for a device the server says is too far behind (`requiresSnapshot`): every
 * page is staged in `snapshot_stage` first (an expired page token restarts the download), then one
 * transaction replaces the synced tables with the snapshot, replays the outbox on top where it is
 * newer (local edits the server has not seen stay, and will be pushed), and sets the cursor to the
 * snapshot's `highWatermark`.
 */
import { LOCAL_TABLES, saveState, type ApplyContext } from './apply.js';
import { compareRevisions, SYNC_CAPABILITIES, type SnapshotItem } from '../../protocol/sync.js';
import { markRemote, SYNCED_TABLES, type Revision, type Row } from './db.js';
import { Or3Error, type HttpClient } from './http.js';

export interface BootstrapContext extends ApplyContext {
  http: HttpClient;
  workspaceId: string;
  snapshotPageSize: number;
  checkStopped: () => void;
}

export async function bootstrap(ctx: BootstrapContext): Promise<void> {
  const { db } = ctx;
  let staged: { snapshotId: string; highWatermark: number } | null = null;
  for (let attempt = 0; !staged; attempt++) {
    try {
      staged = await download(ctx);
    } catch (err) {
      if (err instanceof Or3Error && err.status === 410 && attempt < 3) continue;
      throw err;
    }
  }
  const { snapshotId, highWatermark } = staged;
  const tables = new Set<string>();
  await db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES, 'snapshot_stage'], async (tx) => {
    markRemote(tx);
    for (const name of SYNCED_TABLES) await db.table(name).clear();
    await db.revisions.clear();
    const CHUNK = 1_000;
    for (let offset = 0; ; offset += CHUNK) {
      const items = await db.snapshot_stage.where('snapshotId').equals(snapshotId).offset(offset).limit(CHUNK).toArray();
      if (!items.length) break;
      const rows = new Map<string, Row[]>();
      const revisions: Revision[] = [];
      for (const { item } of items) {
        revisions.push({ tableName: item.tableName, pk: item.pk, ...item.revision, deleted: item.kind === 'tombstone' });
        if (item.kind === 'row') {
          const list = rows.get(item.tableName);
          if (list) list.push(item.payload);
          else rows.set(item.tableName, [item.payload]);
        }
        tables.add(item.tableName);
      }
      for (const [name, list] of rows) await db.table(name).bulkPut(list);
      await db.revisions.bulkPut(revisions);
    }
    // Local edits the server has not accepted yet win where they are newer, as they will on the server.
    for (const op of await db.pending_ops
      .orderBy('seq')
      .filter((o) => !o.error)
      .toArray()) {
      const known = await db.revisions.get([op.tableName, op.pk]);
      const mine = { clock: op.clock, hlc: op.hlc, opId: op.opId };
      // The snapshot is the server's state now: it is what a refusal of this op restores.
      const row = known && !known.deleted ? ((await db.table(op.tableName).get(op.pk)) as Row | undefined) : undefined;
      await db.pending_ops.update(op.seq!, { baseline: { row: row ?? null, revision: known ?? null } });
      if (known && compareRevisions(mine, known) <= 0) continue;
      if (op.operation === 'put' && op.payload) await db.table(op.tableName).put(op.payload);
      else await db.table(op.tableName).delete(op.pk);
      await db.revisions.put({ tableName: op.tableName, pk: op.pk, ...mine, deleted: op.operation === 'delete', local: true });
    }
    await db.snapshot_stage.clear();
    await saveState(ctx, { cursor: highWatermark });
  });
  ctx.events.emit('change', { tables: [...tables], cursor: highWatermark });
}

async function download(ctx: BootstrapContext): Promise<{ snapshotId: string; highWatermark: number }> {
  await ctx.db.snapshot_stage.clear();
  let pageToken: string | null = null;
  let first: { snapshotId: string; highWatermark: number } | null = null;
  do {
    ctx.checkStopped();
    const page: { snapshotId: string; highWatermark: number; items: SnapshotItem[]; nextPageToken: string | null } = await ctx.http.json(
      'POST',
      '/api/sync/snapshot',
      {
        scope: { workspaceId: ctx.workspaceId },
        pageSize: ctx.snapshotPageSize,
        ...(pageToken ? { pageToken } : {}),
        ...SYNC_CAPABILITIES,
      },
    );
    first ??= { snapshotId: page.snapshotId, highWatermark: page.highWatermark };
    await ctx.db.snapshot_stage.bulkAdd(page.items.map((item) => ({ snapshotId: first!.snapshotId, item })));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return first;
}
