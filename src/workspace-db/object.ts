/**
 * WorkspaceDO: one Durable Object per workspace holding its database (docs/architecture.md).
 * Only the RPC surface: migrations, per-user rate limits, transactions, and delegation to the
 * rooms beside it, which hold the SQL. Every acting RPC takes the caller (contract.ts) and
 * authorizes it inside, so one HTTP request is one RPC; `authorize` alone is for the WebSocket
 * ticket and multipart abort, which act on nothing here.
 *
 * A write is one `transactionSync` with no `await` inside, opened here, except in the jobs that
 * await R2 or a Queue between their steps and so run one transaction per step: retention and
 * blob GC (retention.ts, blob-objects.ts), the webhook outbox (webhooks/registry.ts) and a
 * socket's ticket claim (sockets.ts). Expected failures are returned as `Failure` values: thrown
 * errors lose their type over RPC.
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../../migrations/do/migrations.js';
import type { ArchivedEntry } from '../archive/archive';
import type { Bindings } from '../env';
import { ApiError, type Failure } from '../errors';
import { FixedWindowLimiter } from '../sync/limiter';
import { AccessCache } from './access';
import type { Access, ShardCaller, StorageCaller, SyncCaller } from './contract';
import { prepareBatch, type PreparedOp, type PushOpInput, type TableName } from '../sync/protocol';
import { armGc, runAlarm } from './alarm';
import * as blobs from './blobs';
import * as intents from './intents';
import { updateCursor } from './cursors';
import { migrationsApplied, syncBytes } from './meta';
import { rewriteLegacyOpIds } from './legacy-op-ids';
import { applyPush, logConflicts, type PushResult } from './push';
import { pull, readerRefusal, snapshot, type PullOutcome, type SnapshotItem, type SnapshotReply } from './reads';
import { importBatch, type ImportedItem, type ImportOutcome } from './imports';
import { exportLog, exportState } from './exports';
import { markRestored, preparePitr } from './recovery';
import { collectOnRequest, runRetention, type GcRequest } from './retention';
import { checkStored, collectBlobs, deleteBlob, type BlobGcOptions, type BlobGcResult } from './blob-objects';
import { WorkspaceSockets } from './sockets';
import { WebhookRegistry, type AttemptReport, type DeliveryMessage, type DeliveryTarget } from '../webhooks/registry';
import { manageWebhooks, type WebhookReply, type WebhookRequest } from '../webhooks/manage';
import { deploymentBody, type DeploymentEvent } from '../webhooks/events';
import { PokeCoalescer } from '../service/coalesce';
import { manageTokens, prepareServiceOps, read, type ReadReply, type ReadRequest, type TokenReply, type TokenRequest } from '../service/serve';
import { ServerClock, type ServiceOp } from '../service/stamp';
import type { ServiceCredential } from '../service/token';
import { ServiceTokens, type Scope, type ServiceAccess } from '../service/tokens';
import { Meter, type MeterReading } from './metrics';
import { workspaceState, type WorkspaceState } from './admin-view';
import type { PokeChanges } from './poke';

const NOT_RESTARTED: Failure = { ok: false, status: 409, code: 'pitr_not_restarted', message: 'The object did not restart; the restore has not happened yet' };
const RESTORING: Failure = { ok: false, status: 503, code: 'restoring', message: 'The workspace is being restored; try again shortly', retryAfter: 5 };

export class WorkspaceDO extends DurableObject<Bindings> {
  readonly #sql = this.ctx.storage.sql;
  readonly #limiter = new FixedWindowLimiter();
  readonly #access = new AccessCache(this.env);
  // Presence roster sizes feed the metrics' peak (metrics.ts); #meter is read when a roster grows, after construction.
  readonly #sockets = new WorkspaceSockets(this.ctx, this.#access, this, (devices) => this.#meter.peak('peak_presence', devices));
  /** This workspace's webhooks (src/webhooks/): in memory after the first read, so a push costs nothing without hooks. */
  readonly #webhooks = new WebhookRegistry(this.ctx, () => this.env.WEBHOOK_QUEUE);
  /** Service tokens (src/service/): the object is their authority, so a revocation holds from the next request. */
  readonly #service = new ServiceTokens(this.ctx.storage.sql);
  readonly #clock = new ServerClock();
  /** Pokes: at once for a commit, at most every 250 ms for a streamed service write (src/service/coalesce.ts). */
  readonly #pokes = new PokeCoalescer<{ built: PokeChanges & { userId: string }; pusher: WebSocket | undefined }>((from, to, perUser, exact) =>
    this.#sockets.poke(from, to, perUser, exact?.built ?? null, exact?.pusher),
  );
  readonly #meter = new Meter(this.ctx.storage);
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

  /** This workspace's usage counters (metrics.ts), for the admin roll-up. */
  metrics(): MeterReading {
    return this.#meter.read();
  }
  /** The admin console's view of this workspace (admin-view.ts): usage, GC and archive state, sockets, counters. */
  async adminView(): Promise<{ state: WorkspaceState; metrics: MeterReading }> {
    return { state: await workspaceState(this.ctx), metrics: this.#meter.read() };
  }

  /** Liveness probe for deep health checks: proves the object starts and its database answers. */
  ping(): { ok: true; migrations: number } {
    return { ok: true, migrations: migrationsApplied(this.#sql) };
  }

  /** Who the caller is here, with which role (access.ts): alone only for the WebSocket ticket and multipart abort; acting RPCs authorize inside. */
  async authorize(caller: ShardCaller): Promise<({ ok: true } & Access) | Failure> {
    return this.#restoring ? RESTORING : this.#access.authorize(caller);
  }
  /** Authorization, then the caller's sync rate limit. */
  async #admit(caller: SyncCaller): Promise<({ ok: true } & Access) | Failure> {
    const access = await this.authorize(caller);
    const admitted = access.ok ? (this.#limiter.refuse(caller, access.userId) ?? access) : access;
    if (!admitted.ok) this.#meter.count(`refused_${admitted.code}`);
    return admitted;
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
    return this.#commit(caller.workspaceId, ops, access.userId, quotaBytes, { stream: false, missing, pusher });
  }
  /**
   * A push whose batch is prepared here, after authorizing: a federated token's, whose user only
   * the object knows and to whom notifications are forced (as a socket's batch is prepared in
   * socket-sync.ts). One RPC where the Worker would otherwise ask `authorize` first.
   */
  async pushUnprepared(
    caller: SyncCaller,
    ops: PushOpInput[],
    quotaBytes: number,
    missing = 0,
  ): Promise<{ ok: true; results: PushResult[]; serverVersion: number } | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    let prepared: PreparedOp[];
    try {
      prepared = await prepareBatch(ops, caller.workspaceId, access.userId);
    } catch (err) {
      if (err instanceof ApiError) return { ok: false, status: err.status as Failure['status'], code: err.code, message: err.message };
      throw err;
    }
    return this.#commit(caller.workspaceId, prepared, access.userId, quotaBytes, { stream: false, missing });
  }
  /**
   * One push transaction, for a device or a service token: webhook events for its winners are
   * recorded in the same transaction and sent after it (never awaited here); a streamed write
   * (`stream`) pokes through the coalescer and raises no events until its final put. `missing`:
   * the capability flags the pusher lacks (0 for a service token, which declares them all);
   * `pusher`: the socket that asked not to hear its own changes back.
   */
  async #commit(
    workspaceId: string,
    ops: PreparedOp[],
    userId: string,
    quotaBytes: number,
    { stream, missing = 0, pusher }: { stream: boolean; missing?: number; pusher?: WebSocket },
  ) {
    let events = 0;
    const outcome = this.ctx.storage.transactionSync(() => {
      const applied = applyPush(this.#sql, ops, userId, Date.now(), quotaBytes, missing);
      if (applied.ok && !stream) events = this.#webhooks.record(applied.applied);
      return applied;
    });
    if (!outcome.ok) return outcome;
    if (events > 0 || this.#webhooks.leftOver()) this.ctx.waitUntil(this.#webhooks.flush(workspaceId));
    logConflicts(workspaceId, outcome.conflicts);
    this.#meter.counted(['ops_pushed', ops.length], ['bytes_in', ops.reduce((n, op) => n + op.bytes, 0)]);
    const { results, serverVersion, allocated } = outcome;
    const perUser = ops.some((op) => op.tableName === 'notifications');
    // Synchronously after the transaction: the range holds exactly this push's changes.
    if (allocated > 0) {
      const exact = outcome.poke && { built: { ...outcome.poke, userId }, pusher };
      this.#pokes.committed(serverVersion - allocated, serverVersion, perUser, stream, exact);
    }
    if (allocated > 0) await armGc(this.ctx.storage);
    return { ok: true as const, results, serverVersion };
  }
  async pull(
    caller: SyncCaller,
    input: { cursor: number; limit: number; tables?: TableName[]; missing?: number },
  ): Promise<({ ok: true } & PullOutcome) | Failure> {
    const access = await this.#admit(caller);
    if (!access.ok) return access;
    // A read: one implicit transaction is enough, and no await separates its statements.
    const refused = readerRefusal(this.#sql, input.missing ?? 0, input.tables);
    if (refused) return refused;
    const page = pull(this.#sql, { ...input, userId: access.userId });
    this.#meter.counted(['ops_pulled', page.count], ['bytes_out', page.changesJson.length]);
    return { ok: true, ...page };
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
  /** Retention and blob GC (retention.ts, blob-objects.ts) and the presence sweep share the alarm (alarm.ts). */
  override async alarm() {
    await runAlarm(this.ctx.storage, { gc: () => runRetention(this.ctx.storage, this.env, this.ctx.id.name), sweep: () => this.#sockets.sweep() });
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

  /** Storage's authorization: a member, from this object's cache, or a deployment admin the Worker checked (contract.ts). */
  async #storageAccess(caller: StorageCaller): Promise<{ ok: true; userId: string } | Failure> {
    if (this.#restoring) return RESTORING;
    return 'admin' in caller ? { ok: true, userId: caller.admin } : this.#access.authorize(caller);
  }
  /** Multipart create and urls (storage/policy.ts): the blob's state and the committed bytes; arms GC (uploads never committed must be collected). */
  async prepareUpload(caller: StorageCaller, hash: string): Promise<{ ok: true; userId: string; state: blobs.BlobState; usedBytes: number } | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    await armGc(this.ctx.storage);
    return { ok: true, userId: access.userId, ...blobs.uploadState(this.#sql, hash) };
  }
  /**
   * Presign-upload with an upload intent (intents.ts): the blob's state, the committed and
   * reserved bytes, and the intent, reserved atomically against `quotaBytes`.
   */
  async reserveUpload(caller: StorageCaller, input: Omit<intents.ReserveInput, 'userId'>) {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    await armGc(this.ctx.storage);
    return this.ctx.storage.transactionSync(() => {
      const now = Date.now();
      const { state, usedBytes } = blobs.uploadState(this.#sql, input.hash, now);
      return {
        ok: true as const,
        userId: access.userId,
        state,
        usedBytes,
        intent: intents.reserveUpload(this.#sql, { ...input, userId: access.userId }, state, usedBytes, now),
      };
    });
  }
  /** Ends an intent a policy hook refused after it was reserved (the one second call, on a refusal only). */
  cancelIntent(intentId: string): void {
    this.ctx.storage.transactionSync(() => intents.cancelIntent(this.#sql, intentId));
  }
  /**
   * What a download needs (docs/api.md "Downloads"): whether the blob is committed, and what the
   * workspace's rows say of it: its live file_meta (name, kind, MIME type), if any.
   */
  async downloadFacts(caller: StorageCaller, hash: string): Promise<({ ok: true; userId: string } & blobs.FileFacts) | Failure> {
    const access = await this.#storageAccess(caller);
    return access.ok ? { ok: true, userId: access.userId, ...blobs.fileFacts(this.#sql, hash) } : access;
  }
  /** A generic file's URL, on each use: whether `userId` may still read this workspace (a removal drops the cached role at once), and the file's facts. */
  async genericFileFacts(userId: string, hash: string, cacheTtlMs: number): Promise<{ member: boolean } & blobs.FileFacts> {
    const member = await this.#access.isMember(this.ctx.id.name ?? '', userId, cacheTtlMs);
    return { member, ...blobs.fileFacts(this.#sql, hash) };
  }
  /** Commit: the stored bytes checked (blob-objects.ts), then recorded and charged against `quotaBytes` in one transaction. */
  async commitBlob(
    caller: StorageCaller,
    /** `verify`: 'always' while direct S3 uploads are enabled, 'unmarked' otherwise; 'checked' when the Worker already did (the import). */
    input: blobs.CommitInput & { hex: string; verify: 'always' | 'unmarked' | 'checked' },
    quotaBytes: number,
  ): Promise<{ ok: true; userId: string; charged: number } | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    if (input.verify !== 'checked') {
      const refused = await checkStored(this.env.BLOBS, {
        key: input.storageKey,
        sizeBytes: input.sizeBytes,
        hex: input.hex,
        s3Uploads: input.verify === 'always',
      });
      if (refused) return refused;
    }
    const outcome = this.ctx.storage.transactionSync(() => blobs.commitBlob(this.#sql, input, quotaBytes, Date.now()));
    if (!outcome.ok) return outcome;
    await armGc(this.ctx.storage);
    return { ...outcome, userId: access.userId };
  }
  /** Delete (blob-objects.ts): refused while referenced; else the object and its record go. */
  async deleteBlob(caller: StorageCaller, hash: string): Promise<{ ok: true; userId: string; existed: boolean } | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    const deleted = await deleteBlob(this.ctx.storage, this.env.BLOBS, hash);
    return deleted.ok ? { ...deleted, userId: access.userId } : deleted;
  }
  exportFiles(after: string, limit: number): blobs.BlobRecord[] {
    return blobs.listBlobs(this.#sql, after, limit);
  }
  async usage(caller: StorageCaller): Promise<{ ok: true; usedBytes: number; blobCount: number; syncBytes: number } | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    return { ok: true, usedBytes: blobs.usedBytes(this.#sql), blobCount: blobs.blobCount(this.#sql), syncBytes: syncBytes(this.#sql) };
  }
  /** Blob GC (blob-objects.ts), as the alarm runs it, with the route's cooldown. */
  async collectBlobs(caller: StorageCaller, options: BlobGcOptions): Promise<({ userId: string } & BlobGcResult) | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    const result = await collectBlobs(this.ctx.storage, this.env.BLOBS, caller.workspaceId, options);
    return result.ok ? { ...result, userId: access.userId } : result;
  }

  /** Webhook management (src/webhooks/manage.ts); `caller` null: the deployment admins' hooks, checked by the Worker. */
  async webhooks(caller: ShardCaller | null, request: WebhookRequest): Promise<WebhookReply | Failure> {
    if (caller) {
      const access = await this.authorize(caller);
      if (!access.ok) return access;
    }
    const { reply, flush } = manageWebhooks(this.#webhooks, request, Date.now());
    if (flush) this.ctx.waitUntil(this.#webhooks.flush(this.ctx.id.name!));
    return reply;
  }
  /** The deployment admins' hooks (this object is DEPLOYMENT_OBJECT): the event filters of enabled hooks, and an event to record. */
  deploymentSubscriptions(): string[] {
    return this.#webhooks.hooks().flatMap((h) => (h.enabled === 1 ? (JSON.parse(h.events) as string[]) : []));
  }
  deploymentEvent(event: DeploymentEvent, data: Record<string, unknown>): void {
    const now = Date.now();
    const { deliveryIds } = this.#webhooks.emit(event, (eventId) => deploymentBody({ eventId, event, now, data }), now);
    if (deliveryIds.length) this.ctx.waitUntil(this.#webhooks.flush(this.ctx.id.name!));
  }
  /** The Queue consumer's two steps (src/webhooks/deliver.ts), and the dead-letter queue's. */
  webhookClaim(messages: DeliveryMessage[]): (DeliveryTarget | null)[] {
    return this.#webhooks.claim(messages, Date.now());
  }
  webhookReport(reports: AttemptReport[], disableAfterMs: number): void {
    this.#webhooks.report(reports, disableAfterMs, Date.now());
  }
  webhookDeadLettered(messages: DeliveryMessage[]): void {
    this.#webhooks.deadLettered(messages, Date.now());
  }

  /** Service token management (src/service/serve.ts); `caller` null: a deployment admin, checked by the Worker. */
  async serviceTokens(caller: ShardCaller | null, request: TokenRequest): Promise<TokenReply | Failure> {
    if (caller) {
      const access = await this.authorize(caller);
      if (!access.ok) return access;
    }
    return manageTokens(this.#service, request, Date.now());
  }
  #serviceAccess(credential: ServiceCredential, scope: Scope, perMinute: number): ServiceAccess | Failure {
    return this.#restoring ? RESTORING : this.#service.authorize(credential, scope, perMinute, Date.now());
  }
  /** The service API's reads: a thread's messages in conversation order, one row. */
  serviceRead(credential: ServiceCredential, request: ReadRequest, perMinute: number): ({ token: ServiceAccess } & ReadReply) | Failure {
    const access = this.#serviceAccess(credential, 'read', perMinute);
    if ('ok' in access) return access;
    const reply = read(this.#sql, request);
    return reply.ok ? { ...reply, token: access } : reply;
  }
  /** A service token's push (write scope), stamped by the server; `stream`: an interim put of a streamed row. */
  async servicePush(
    credential: ServiceCredential,
    workspaceId: string,
    ops: ServiceOp[],
    options: { quotaBytes: number; perMinute: number; stream: boolean },
  ): Promise<{ ok: true; results: PushResult[]; serverVersion: number; token: ServiceAccess } | Failure> {
    const access = this.#serviceAccess(credential, 'write', options.perMinute);
    if ('ok' in access) return access;
    const prepared = await prepareServiceOps(this.#sql, this.#clock, access, workspaceId, ops);
    if (!Array.isArray(prepared)) return prepared;
    // Checked again after the await: a revocation that arrived meanwhile wins.
    const revoked = this.#service.stillValid(credential, 'write', Date.now());
    if (revoked) return revoked;
    const outcome = await this.#commit(workspaceId, prepared, access.actor, options.quotaBytes, { stream: options.stream });
    return outcome.ok ? { ...outcome, token: access } : outcome;
  }

  /** A WebSocket upgrade the Worker forwarded after authorizing it. */
  override async fetch(request: Request): Promise<Response> {
    const response = await this.#sockets.accept(request, this.#restoring);
    if (response.webSocket) this.#meter.peak('peak_sockets', this.ctx.getWebSockets().length);
    return response;
  }
  /** Closes the sockets of one user (removed from the workspace) or of everyone (workspace deleted). */
  closeSockets(userId?: string): number {
    return this.#sockets.close(4003, 'Access to this workspace was revoked', userId);
  }
  /** `endServiceTokens`: the account itself ended (disabled, deleted), so the service tokens it created end too (docs/admin.md). */
  closeSessionSockets(input: { userId: string; sessionId?: string; endServiceTokens?: boolean }): number {
    if (input.endServiceTokens) this.#service.revokeCreatedBy(input.userId, Date.now());
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
