/**
 * WorkspaceDO: one Durable Object per workspace holding its database (docs/architecture.md).
 * Only the RPC surface: migrations, per-user rate limits, transactions, and delegation to the
 * rooms beside it, which hold the SQL. A write is one `transactionSync` with no `await` inside.
 * Expected failures are returned as `Failure` values: thrown errors lose their type over RPC.
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../../migrations/do/migrations.js';
import type { ArchivedEntry } from '../archive/archive';
import type { Bindings } from '../env';
import type { Failure } from '../errors';
import { FixedWindowLimiter } from '../sync/limiter';
import { AccessCache, type Access, type ShardCaller, type SyncCaller } from './access';
import type { PreparedOp, TableName } from '../sync/protocol';
import { armGc, runAlarm } from './alarm';
import * as blobs from './blobs';
import * as intents from './intents';
import { updateCursor } from './cursors';
import { migrationsApplied, syncBytes } from './meta';
import { rewriteLegacyOpIds } from './legacy-op-ids';
import { applyPush, logConflicts, type PushResult } from './push';
import { pull, readerRefusal, snapshot, type PullOutcome, type SnapshotItem, type SnapshotReply } from './reads';
import { importBatch, type ImportedItem, type ImportOutcome } from './imports';
import { exportLog, exportState, markRestored, preparePitr } from './recovery';
import { collectOnRequest, runRetention, type GcRequest } from './retention';
import { WorkspaceSockets } from './sockets';

const NOT_RESTARTED: Failure = { ok: false, status: 409, code: 'pitr_not_restarted', message: 'The object did not restart; the restore has not happened yet' };
const RESTORING: Failure = { ok: false, status: 503, code: 'restoring', message: 'The workspace is being restored; try again shortly', retryAfter: 5 };

export class WorkspaceDO extends DurableObject<Bindings> {
  readonly #sql = this.ctx.storage.sql;
  readonly #limiter = new FixedWindowLimiter();
  readonly #access = new AccessCache(this.env);
  readonly #sockets = new WorkspaceSockets(this.ctx, this.#access, this);
  /** Set by pitrPrepare: this instance is about to be rewound and serves nothing more (503). */
  #restoring = false;
  /** This instance, in memory only: pitrFinish uses it to tell that a restart really happened. */
  readonly #instance = crypto.randomUUID();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    // Returned, so a failing migration rejects blockConcurrencyWhile and resets the object.
    void ctx.blockConcurrencyWhile(async () => {
      await migrate(drizzle(ctx.storage), migrations);
      // The one object migration SQL cannot do (a hash per id): stored legacy opIds become UUIDs.
      ctx.storage.transactionSync(() => rewriteLegacyOpIds(ctx.storage.sql));
    });
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong')); // never wakes the object; presence.ts reads its time
  }

  /** Liveness probe for deep health checks: proves the object starts and its database answers. */
  ping(): { ok: true; migrations: number } {
    return { ok: true, migrations: migrationsApplied(this.#sql) };
  }

  /** Who the caller is here, with which role (access.ts): for routes that do more than one thing. */
  async authorize(caller: ShardCaller): Promise<({ ok: true } & Access) | Failure> {
    return this.#restoring ? RESTORING : this.#access.authorize(caller);
  }
  /** Authorization, then the caller's sync rate limit. */
  async #admit(caller: SyncCaller): Promise<({ ok: true } & Access) | Failure> {
    const access = await this.authorize(caller);
    return access.ok ? (this.#limiter.refuse(caller, access.userId) ?? access) : access;
  }
  /**
   * Whether a sync request would be admitted, without counting it: a socket asks this before it
   * parses a large frame (socket-sync.ts `screenLargeFrame`), so a viewer's or a rate-limited
   * user's megabytes cost the serial object no parsing.
   */
  async screen(caller: SyncCaller): Promise<Failure | null> {
    const access = await this.authorize(caller);
    return access.ok ? this.#limiter.refuse(caller, access.userId, Date.now(), false) : access;
  }
  /** Drops cached authorization facts after a D1 write changed them (access.ts `forget`). */
  forget(input: { userId?: string; sessionId?: string }): void {
    this.#access.forget(input);
  }

  /**
   * `quotaBytes`: OR3_SYNC_WORKSPACE_QUOTA_BYTES, the cap on this workspace's stored sync data;
   * `missing`: the capability flags the client lacks (capabilities.ts), 0 when it has them all.
   */
  async push(
    caller: SyncCaller,
    ops: PreparedOp[],
    quotaBytes: number,
    missing = 0,
    /** In-process only: the socket that pushed and asked not to hear its own changes back (socket-sync.ts). */
    pusher?: WebSocket,
  ): Promise<{ ok: true; results: PushResult[]; serverVersion: number } | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    const outcome = this.ctx.storage.transactionSync(() => applyPush(this.#sql, ops, access.userId, Date.now(), quotaBytes, missing));
    if (!outcome.ok) return outcome;
    logConflicts(caller.workspaceId, outcome.conflicts);
    const { results, serverVersion, allocated } = outcome;
    const perUser = ops.some((op) => op.tableName === 'notifications');
    // Synchronously after the transaction: the range holds exactly this push's changes.
    if (allocated > 0)
      this.#sockets.poke(serverVersion - allocated, serverVersion, perUser, outcome.poke && { ...outcome.poke, userId: access.userId }, pusher);
    if (allocated > 0) await armGc(this.ctx.storage);
    return { ok: true, results, serverVersion };
  }
  async pull(
    caller: SyncCaller,
    input: { cursor: number; limit: number; tables?: TableName[]; missing?: number },
  ): Promise<({ ok: true } & PullOutcome) | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    // A read: one implicit transaction is enough, and no await separates its statements.
    return readerRefusal(this.#sql, input.missing ?? 0, input.tables) ?? { ok: true, ...pull(this.#sql, { ...input, userId: access.userId }) };
  }
  async updateCursor(caller: SyncCaller, input: { deviceId: string; version: number }): Promise<{ ok: true } | Failure> {
    const access = await this.#admit(caller);
    return !access.ok ? access : this.ctx.storage.transactionSync(() => updateCursor(this.#sql, { ...input, userId: access.userId }, Date.now()));
  }
  async snapshot(
    caller: SyncCaller,
    input: { pageSize: number; pageToken?: string; tables?: TableName[]; missing?: number },
  ): Promise<SnapshotReply | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    return readerRefusal(this.#sql, input.missing ?? 0, input.tables) ?? snapshot(this.#sql, { ...input, userId: access.userId });
  }
  async gc(caller: SyncCaller, input: GcRequest): Promise<{ ok: true; deletedCount: number; userId: string } | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    return {
      ok: true,
      deletedCount: await collectOnRequest(this.ctx.storage, this.env.BLOBS, { ...caller, userId: access.userId }, input),
      userId: access.userId,
    };
  }
  /** Retention and blob GC (retention.ts) and the presence sweep share the alarm (alarm.ts); `collectNow` runs GC at once. */
  override async alarm() {
    await runAlarm(this.ctx.storage, { gc: () => this.collectNow(), sweep: () => this.#sockets.sweep() });
  }
  collectNow(retentionSeconds?: number): Promise<boolean> {
    return runRetention(this.ctx.storage, this.env, this.ctx.id.name, retentionSeconds);
  }
  /** PITR step 1: schedules the rewind to `at`; serves nothing more (sockets closed, 503). */
  async pitrPrepare(at: number): Promise<{ ok: true; previousHead: number; bookmark: string; undoBookmark: string; instance: string } | Failure> {
    const prepared = await preparePitr(this.ctx.storage, at, (restoring) => {
      this.#restoring = restoring;
      if (restoring) this.#sockets.close(1012, 'Restoring; reconnect shortly');
    });
    return prepared.ok ? { ...prepared, instance: this.#instance } : prepared;
  }
  /** PITR step 2: restarts the object, which then opens the restored database. The call itself rejects. */
  pitrRestart(): void {
    this.ctx.abort('point-in-time restore');
  }
  /** PITR step 3, on the restored database; refused on the instance that prepared it (no restart happened). */
  pitrFinish(previousHead: number, preparedBy?: string): { ok: true; restoredHead: number; serverVersion: number } | Failure {
    if (preparedBy !== undefined && preparedBy === this.#instance) return NOT_RESTARTED;
    return { ok: true, ...this.ctx.storage.transactionSync(() => markRestored(this.#sql, previousHead)) };
  }
  exportLog(after: number, limit: number, userId: string | null): { entries: ArchivedEntry[]; through: number; done: boolean } {
    return exportLog(this.#sql, after, limit, userId);
  }
  exportState(after: [string, string] | null, pageSize: number, userId: string): { items: SnapshotItem[]; next: [string, string] | null } {
    return exportState(this.#sql, after, pageSize, userId);
  }
  async importHistory(entries: ArchivedEntry[], items: ImportedItem[] = []): Promise<ImportOutcome> {
    const outcome = this.ctx.storage.transactionSync(() => importBatch(this.#sql, entries, items, Date.now()));
    if (entries.length || items.length) await armGc(this.ctx.storage);
    return outcome;
  }
  /** Erases this object's database and alarm: a fork whose replay failed leaves nothing behind. */
  discard(): Promise<void> {
    return this.ctx.storage.deleteAll();
  }

  /** Presign-upload's one call: the blob's state and the committed bytes; arms GC (uploads never committed must be collected). */
  async prepareUpload(hash: string): Promise<{ state: blobs.BlobState; usedBytes: number }> {
    await armGc(this.ctx.storage);
    return blobs.uploadState(this.#sql, hash);
  }
  /**
   * Presign-upload's one call with an upload intent (intents.ts): the blob's state, the committed
   * and reserved bytes, and the intent, reserved atomically against `quotaBytes`.
   */
  async reserveUpload(input: intents.ReserveInput) {
    await armGc(this.ctx.storage);
    return this.ctx.storage.transactionSync(() => {
      const now = Date.now();
      const { state, usedBytes } = blobs.uploadState(this.#sql, input.hash, now);
      return { state, usedBytes, intent: intents.reserveUpload(this.#sql, input, state, usedBytes, now) };
    });
  }
  cancelIntent(intentId: string): void {
    this.ctx.storage.transactionSync(() => intents.cancelIntent(this.#sql, intentId));
  }
  blobState(hash: string): blobs.BlobState {
    return blobs.blobState(this.#sql, hash);
  }
  /**
   * What a download needs (docs/api.md "Downloads"): whether the blob is committed, and what the
   * workspace's rows say of it: its live file_meta (name, kind, MIME type), if any.
   */
  fileFacts(hash: string): {
    committed: boolean;
    blob: { mimeType: string; kind: string | null; name: string | null } | null;
    meta: blobs.FileMetaFacts | null;
  } {
    return blobs.fileFacts(this.#sql, hash);
  }
  /** Whether `userId` may still read this workspace (a removal is seen at once: it drops the cached role). */
  isMember(userId: string, cacheTtlMs: number): Promise<boolean> {
    return this.#access.isMember(this.ctx.id.name ?? '', userId, cacheTtlMs);
  }
  async commitBlob(input: blobs.CommitInput, quotaBytes: number): Promise<blobs.CommitOutcome> {
    const outcome = this.ctx.storage.transactionSync(() => blobs.commitBlob(this.#sql, input, quotaBytes, Date.now()));
    if (outcome.ok) await armGc(this.ctx.storage);
    return outcome;
  }
  markForDelete(hash: string): blobs.DeleteOutcome {
    return this.ctx.storage.transactionSync(() => blobs.markForDelete(this.#sql, hash, Date.now()));
  }
  exportFiles(after: string, limit: number): blobs.BlobRecord[] {
    return blobs.listBlobs(this.#sql, after, limit);
  }
  usage(): { usedBytes: number; blobCount: number; syncBytes: number } {
    return { usedBytes: blobs.usedBytes(this.#sql), blobCount: blobs.blobCount(this.#sql), syncBytes: syncBytes(this.#sql) };
  }
  /** Blob GC's phases (storage/gc.ts drives them; the alarm uses the same ones in-process). */
  startBlobGc(input: { retentionSeconds: number; limit: number; cooldownMs: number }) {
    return blobs.blobGcSteps(this.ctx.storage).start(input);
  }
  finishBlobGc(hashes: string[]): number {
    return blobs.blobGcSteps(this.ctx.storage).finish(hashes);
  }
  markStrays(keys: string[], nextCursor: string | null): { hash: string; storageKey: string }[] {
    return blobs.blobGcSteps(this.ctx.storage).markStrays(keys, nextCursor);
  }

  /** A WebSocket upgrade the Worker forwarded after authorizing it. */
  override async fetch(request: Request): Promise<Response> {
    return this.#sockets.accept(request, this.#restoring);
  }
  /** Closes the sockets of one user (removed from the workspace) or of everyone (workspace deleted). */
  closeSockets(userId?: string): number {
    return this.#sockets.close(4003, 'Access to this workspace was revoked', userId);
  }
  closeSessionSockets(input: { userId: string; sessionId?: string }): number {
    return this.#sockets.closeSession(input);
  }
  /** Presence and sync over the socket (sockets.ts); "ping" is answered by the auto-response without waking the object. */
  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer) {
    return this.#sockets.message(ws, message);
  }
  override webSocketClose(ws: WebSocket, code: number, reason: string) {
    this.#sockets.closed(ws, code, reason);
  }
  override webSocketError(ws: WebSocket) {
    this.#sockets.closed(ws);
  }
}
