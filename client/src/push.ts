/**
 * Pushing the outbox: up to `pushBatchSize` ops in outbox order per request. An accepted op
 * (an idempotent replay included) leaves the outbox; a refused one stays with its error, out of
 * the push loop, and its effect is taken back locally (the row returns to its baseline, what
 * the server has beneath it, unless a newer local edit of the row is waiting). One bad op
 * rejects a whole batch (400/413), so such a batch is retried op by op to find it; a batch over
 * the workspace's sync quota is refused as a whole. Nothing leaves the outbox before the server
 * has answered for it, and every op is idempotent by its opId.
 */
import { LOCAL_TABLES, readState, type ApplyEvents } from './apply.js';
import { SYNC_CAPABILITIES, type TableName } from '../../protocol/sync.js';
import { markRemote, SYNCED_TABLES, type LocalDatabase, type PendingOp, type Row } from './db.js';
import type { EventSink } from './events.js';
import { Or3Error, type HttpClient } from './http.js';
import { SocketUnavailable, type SocketSync } from './socket-sync.js';

/** A local write the server refused for good, as the app sees it (`failedOps()`, the `rejected` event). */
export interface FailedOp {
  opId: string;
  tableName: TableName;
  pk: string;
  operation: 'put' | 'delete';
  payload?: Row;
  /** The server's machine code and message, e.g. `insufficient_role`. */
  error: { code: string; message: string };
  /** When the write was made (epoch ms). */
  createdAt: number;
}

export interface PushEvents extends ApplyEvents {
  /** An op the server refused for good; it stays in the outbox (`failedOps()`) with this error. */
  rejected: { op: FailedOp; error: { code: string; message: string } };
}

export interface PushContext {
  db: LocalDatabase;
  http: HttpClient;
  /** Sync over the live socket, tried first (HTTP when it is not there or drops). */
  socket?: SocketSync;
  workspaceId: string;
  events: EventSink<PushEvents>;
  pushBatchSize: number;
  checkStopped: () => void;
  /** The outbox changed (the status's pending and failed counts). */
  outboxChanged: () => Promise<void>;
}

export const failedOp = (op: PendingOp): FailedOp => ({
  opId: op.opId,
  tableName: op.tableName,
  pk: op.pk,
  operation: op.operation,
  ...(op.payload ? { payload: op.payload } : {}),
  error: op.error ?? { code: 'unknown', message: 'Refused' },
  createdAt: op.createdAt,
});

/** Ops waiting to be pushed, and ops refused for good. */
export async function outboxCounts(db: LocalDatabase): Promise<{ pending: number; failed: number }> {
  const ops = await db.pending_ops.toArray();
  const failed = ops.filter((o) => o.error).length;
  return { pending: ops.length - failed, failed };
}

export async function pushOutbox(ctx: PushContext): Promise<void> {
  for (;;) {
    ctx.checkStopped();
    const batch = await ctx.db.pending_ops
      .orderBy('seq')
      .filter((op) => !op.error)
      .limit(ctx.pushBatchSize)
      .toArray();
    if (!batch.length) return;
    try {
      await pushBatch(ctx, batch);
    } catch (err) {
      // One bad op rejects a whole batch (400/413): send them one by one to find it. A batch
      // over the workspace's sync quota is refused as a whole, and its ops with it: sending
      // them one by one would only fill the quota to the brim in arrival order.
      if (err instanceof Or3Error && (err.status === 400 || err.status === 413) && err.code !== 'quota_exceeded' && batch.length > 1) {
        for (const op of batch) await pushBatch(ctx, [op]).catch((e) => rejectIfPermanent(ctx, [op], e));
      } else {
        await rejectIfPermanent(ctx, batch, err);
      }
    }
    await ctx.outboxChanged();
  }
}

async function rejectIfPermanent(ctx: PushContext, ops: PendingOp[], err: unknown) {
  if (!(err instanceof Or3Error) || err.transient || err.status === 401) throw err;
  await reject(
    ctx,
    ops.map((op) => ({ op, error: { code: err.code, message: err.message } })),
  );
}

/**
 * Marks ops as refused for good and takes their effect back locally: the row returns to what
 * the server has (the op's baseline), unless a newer local edit of it is waiting. The ops stay
 * in the outbox with their error for the app to show, retry or discard.
 */
async function reject(ctx: PushContext, items: { op: PendingOp; error: { code: string; message: string } }[]) {
  const { db } = ctx;
  const tables = new Set<string>();
  await db.transaction('rw', [...SYNCED_TABLES, ...LOCAL_TABLES], async (tx) => {
    markRemote(tx);
    for (const { op, error } of items) {
      if (!(await db.pending_ops.get(op.seq!))) continue; // superseded meanwhile
      await db.pending_ops.update(op.seq!, { error });
      const newer = await db.pending_ops
        .where('[tableName+pk]')
        .equals([op.tableName, op.pk])
        .filter((o) => !o.error && o.seq! > op.seq!)
        .count();
      const revision = await db.revisions.get([op.tableName, op.pk]);
      if (newer || !op.baseline || revision?.opId !== op.opId) continue;
      const { row, revision: base } = op.baseline;
      if (row) await db.table(op.tableName).put(row);
      else await db.table(op.tableName).delete(op.pk);
      if (base) await db.revisions.put({ ...base, local: false });
      else await db.revisions.delete([op.tableName, op.pk]);
      tables.add(op.tableName);
    }
  });
  for (const { op, error } of items) ctx.events.emit('rejected', { op: failedOp({ ...op, error }), error });
  if (tables.size) ctx.events.emit('change', { tables: [...tables], cursor: (await readState(db)).cursor });
}

async function pushBatch(ctx: PushContext, batch: PendingOp[]) {
  const { db } = ctx;
  await db.pending_ops.bulkUpdate(batch.map((op) => ({ key: op.seq!, changes: { attempts: op.attempts + 1 } })));
  const ops = batch.map((op) => ({
    tableName: op.tableName,
    operation: op.operation,
    pk: op.pk,
    ...(op.payload ? { payload: op.payload } : {}),
    stamp: { deviceId: op.deviceId, opId: op.opId, hlc: op.hlc, clock: op.clock },
  }));
  const res = await pushOnce(ctx, ops);
  const byId = new Map(batch.map((op) => [op.opId, op]));
  const accepted: number[] = [];
  /** Ops the server holds as their key's winner: what the echo of our own change would have told us. */
  const held: PendingOp[] = [];
  const refused: { op: PendingOp; error: { code: string; message: string } }[] = [];
  for (const result of res.results) {
    const op = byId.get(result.opId);
    if (!op) continue;
    if (result.success) accepted.push(op.seq!);
    if (result.success && result.applied === true) held.push(op);
    else if (!result.success) refused.push({ op, error: { code: result.errorCode ?? 'REJECTED', message: result.error ?? 'The server refused this change' } });
  }
  await db.transaction('rw', [db.pending_ops, db.revisions], async () => {
    await db.pending_ops.bulkDelete(accepted);
    // A socket push hears no echo of its own changes (socket-sync.ts): their revisions stop
    // being local edits here, as applying the echo would do (apply.ts).
    const known = await db.revisions.bulkGet(held.map((op) => [op.tableName, op.pk] as [string, string]));
    const settled = known.filter((r, i) => r?.local && r.opId === held[i]!.opId).map((r) => ({ ...r!, local: false }));
    if (settled.length) await db.revisions.bulkPut(settled);
  });
  if (refused.length) await reject(ctx, refused);
}

/** Over the socket while it is live, else (or when it goes away mid-request) over HTTP: the ops' opIds make a second send idempotent. */
async function pushOnce(
  ctx: PushContext,
  ops: unknown[],
): Promise<{ results: { opId: string; success: boolean; error?: string; errorCode?: string; applied?: boolean }[] }> {
  if (ctx.socket) {
    try {
      return await ctx.socket.push(ops);
    } catch (err) {
      if (!(err instanceof SocketUnavailable)) throw err;
    }
  }
  return ctx.http.json('POST', '/api/sync/push', { scope: { workspaceId: ctx.workspaceId }, ops, ...SYNC_CAPABILITIES });
}
