/**
 * WorkspaceDO: one Durable Object per workspace holding its database (docs/architecture.md).
 * Only the RPC surface: migrations, transactions, and delegation to the rooms beside it, which
 * hold the SQL. Sync (authorization, rate limits, its transactions, pokes) is the sync service's
 * (sync-service.ts), which the sockets call too. Every acting RPC takes the caller (src/workspace-contract.ts)
 * and authorizes it inside, so one HTTP request is one RPC; `authorize` alone is for the
 * WebSocket ticket and multipart abort, which act on nothing here.
 *
 * A write is one `transactionSync` with no `await` inside, except in the jobs that await R2 or a
 * Queue between their steps and so run one transaction per step: retention and blob GC
 * (retention.ts, blob-objects.ts), the webhook outbox (webhooks/registry.ts) and a socket's
 * ticket claim (sockets.ts). Expected failures are returned as `Failure` values: thrown errors
 * lose their type over RPC.
 */
import { DurableObject } from 'cloudflare:workers';
import { drizzle } from 'drizzle-orm/durable-sqlite';
import { migrate } from 'drizzle-orm/durable-sqlite/migrator';
import migrations from '../../migrations/do/migrations.js';
import type { ArchivedEntry } from './history-archive';
import type { Bindings } from '../env';
import type { Failure } from '../errors';
import { AccessCache } from './access';
import { MemberRoster, type RepairReport } from './members';
import type { RosterChange, RosterOutcome, RosterState } from './roster';
import type { WorkspaceInfo } from '../workspace-records/member-copy';
import type { Role } from '../workspace-records/permissions';
import type { Access, ShardCaller, StorageCaller, SyncCaller } from '../workspace-contract';
import type { PreparedOp, PushOpInput, TableName } from '../../protocol/rules';
import { armGc, runAlarm } from './alarm';
import * as blobs from './blobs';
import * as intents from './intents';
import { migrationsApplied, syncBytes } from './meta';
import { rewriteLegacyOpIds } from './legacy-op-ids';
import type { PushResult } from './push';
import type { PullOutcome, SnapshotItem, SnapshotReply } from './reads';
import { importBatch, type ImportedItem, type ImportOutcome } from './imports';
import { exportLog, exportState } from './exports';
import { markRestored, preparePitr } from './recovery';
import { collectOnRequest, runRetention, type GcRequest } from './retention';
import { checkStored, collectBlobs, deleteBlob, type BlobGcOptions, type BlobGcResult } from './blob-objects';
import { WorkspaceSockets } from './sockets';
import { WebhookRegistry, type AttemptReport, type DeliveryMessage, type ClaimReply } from '../webhooks/registry';
import { manageWebhooks, type WebhookReply, type WebhookRequest } from '../webhooks/manage';
import { deploymentBody, type DeploymentEvent } from '../webhooks/events';
import { raiseSyncError } from '../events/deployment';
import { manageTokens, prepareServiceOps, read, type ReadReply, type ReadRequest, type TokenReply, type TokenRequest } from '../service/serve';
import { ServerClock, type ServiceOp } from '../service/stamp';
import type { ServiceCredential } from '../service/token';
import { ServiceTokens, type Scope, type ServiceAccess } from '../service/tokens';
import { Meter, type MeterReading } from './metrics';
import { workspaceState, type WorkspaceState } from './admin-view';
import { RESTORING, SyncService } from './sync-service';
import { objectConfig } from './settings';
import { syncPerMinute } from '../limiter';

const NOT_RESTARTED: Failure = { ok: false, status: 409, code: 'pitr_not_restarted', message: 'The object did not restart; the restore has not happened yet' };

export class WorkspaceDO extends DurableObject<Bindings> {
  readonly #sql = this.ctx.storage.sql;
  readonly #access = new AccessCache(
    this.env,
    (userId) => this.#members.role(userId),
    () => this.#config.auth,
  );
  /** The workspace's members: this object is their authority; D1 and the user objects hold copies (members.ts). */
  readonly #members = new MemberRoster(this.ctx, this.env, {
    forget: (input) => this.#access.forget(input),
    closeSockets: (userId) => void this.#sockets.close(4003, 'Access to this workspace was revoked', userId),
  });
  /** This workspace's webhooks (src/webhooks/): in memory after the first read, so a push costs nothing without hooks. */
  readonly #webhooks = new WebhookRegistry(this.ctx, () => this.env.WEBHOOK_QUEUE);
  readonly #meter = new Meter(this.ctx.storage);
  /** Sync for both transports (sync-service.ts): these RPC methods and the sockets call it alike. */
  readonly #sync = new SyncService(this.ctx, {
    access: this.#access,
    quotaBytes: () => this.#config.sync.workspaceQuotaBytes,
    perMinute: (name) => syncPerMinute(this.#config.rateLimitOverrides, name),
    meter: this.#meter,
    webhooks: this.#webhooks,
    restoring: () => this.#restoring,
    poke: (from, to, perUser, built, pusher) => this.#sockets.poke(from, to, perUser, built, pusher),
  });
  // Presence roster sizes feed the metrics' peak (metrics.ts).
  // A socket's sync message the server failed raises the deployment event, as the HTTP routes do (src/events/deployment.ts).
  readonly #sockets = new WorkspaceSockets(
    this.ctx,
    this.#access,
    this.#sync,
    (devices) => this.#meter.peak('peak_presence', devices),
    (failure, message) =>
      raiseSyncError(this.env, (pending) => this.ctx.waitUntil(pending), {
        ...failure,
        method: 'WEBSOCKET',
        path: '/api/sync/ws',
        requestId: message.id,
        socketMessage: message.type,
      }),
  );
  /** Service tokens (src/service/): the object is their authority, so a revocation holds from the next request. */
  readonly #service = new ServiceTokens(this.ctx.storage.sql);
  readonly #clock = new ServerClock();
  /** Set by pitrPrepare: this instance is about to be rewound and serves nothing more (503). */
  #restoring = false;
  /** This instance, in memory only: pitrFinish uses it to tell that a restart really happened. */
  readonly #instance = crypto.randomUUID();

  /** This deployment's configuration, read from the object's own env (settings.ts): no RPC carries quotas, limits or lifetimes. */
  get #config() {
    return objectConfig(this.env);
  }

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
  authorize(caller: ShardCaller): Promise<({ ok: true } & Access) | Failure> {
    return this.#sync.authorize(caller);
  }
  /** Drops cached authorization facts after a D1 write changed them (access.ts `forget`). */
  forget(input: { userId?: string; sessionId?: string }): void {
    this.#access.forget(input);
  }

  /** A change to the members, written here first (the authority), then copied to D1 and the user's object (members.ts). */
  memberChange(change: RosterChange): Promise<RosterOutcome> {
    return this.#members.change(change);
  }
  /** Several changes in one transaction and one copy (import `member` lines). */
  memberChanges(changes: RosterChange[]): Promise<RosterOutcome[]> {
    return this.#members.changeMany(changes);
  }
  /** D1's workspace row changed (renamed, deleted, restored): members.ts `setInfo`. */
  workspaceInfo(info: WorkspaceInfo | null): Promise<void> {
    return this.#members.setInfo(info);
  }
  /** Reconciles the copies with this authority (the repair route; members.ts `repair`). */
  repairMembers(userId?: string): Promise<RepairReport> {
    return this.#members.repair(userId);
  }
  /** The members as this object holds them, and how many copies are still queued. */
  members(): Promise<{ state: RosterState; members: { userId: string; role: Role }[]; pending: number }> {
    return this.#members.view();
  }

  /** Sync's RPC methods: the same service the workspace's sockets call (sync-service.ts). */
  push(caller: SyncCaller, ops: PreparedOp[], missing = 0): Promise<{ ok: true; results: PushResult[]; serverVersion: number } | Failure> {
    return this.#sync.push(caller, ops, { missing });
  }
  /** A federated token's push: the batch is prepared in the object, which alone knows the user (sync-service.ts). */
  pushUnprepared(caller: SyncCaller, ops: PushOpInput[], missing = 0): Promise<{ ok: true; results: PushResult[]; serverVersion: number } | Failure> {
    return this.#sync.pushUnprepared(caller, ops, missing);
  }
  pull(caller: SyncCaller, input: { cursor: number; limit: number; tables?: TableName[]; missing?: number }): Promise<({ ok: true } & PullOutcome) | Failure> {
    return this.#sync.pull(caller, input);
  }
  updateCursor(caller: SyncCaller, input: { deviceId: string; version: number }): Promise<{ ok: true } | Failure> {
    return this.#sync.updateCursor(caller, input);
  }
  snapshot(caller: SyncCaller, input: { pageSize: number; pageToken?: string; tables?: TableName[]; missing?: number }): Promise<SnapshotReply | Failure> {
    return this.#sync.snapshot(caller, input);
  }
  async gc(caller: SyncCaller, input: GcRequest): Promise<{ ok: true; deletedCount: number; userId: string } | Failure> {
    const access = await this.#sync.admit(caller);
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
  async discard(): Promise<void> {
    await this.ctx.storage.deleteAll();
  }

  /** Storage's authorization: a member, from this object's cache, or a deployment admin the Worker checked (src/workspace-contract.ts). */
  async #storageAccess(caller: StorageCaller): Promise<{ ok: true; userId: string } | Failure> {
    if (this.#restoring) return RESTORING;
    return 'admin' in caller ? { ok: true, userId: caller.admin } : this.#access.authorize(caller);
  }
  /**
   * Multipart create, urls and complete (storage/policy.ts): the blob's state and the committed
   * bytes, after the step's one quota check (OR3_STORAGE_WORKSPACE_QUOTA_BYTES, read here); arms
   * GC (uploads never committed must be collected).
   */
  async prepareUpload(
    caller: StorageCaller,
    input: { hash: string; sizeBytes: number },
  ): Promise<{ ok: true; userId: string; state: blobs.BlobState; usedBytes: number } | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    await armGc(this.ctx.storage);
    const now = Date.now();
    const { state, usedBytes } = blobs.uploadState(this.#sql, input.hash, now);
    const refused = intents.quotaRefusal(
      this.#sql,
      { sizeBytes: input.sizeBytes, quotaBytes: this.#config.storage.workspaceQuotaBytes },
      state,
      usedBytes,
      now,
    );
    return refused ?? { ok: true, userId: access.userId, state, usedBytes };
  }
  /**
   * Presign-upload with an upload intent (intents.ts): the blob's state, the committed and
   * reserved bytes, and the intent, reserved atomically against the workspace's storage quota:
   * presign's one quota check.
   */
  async reserveUpload(caller: StorageCaller, input: Omit<intents.ReserveInput, 'userId' | 'quotaBytes'>) {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    await armGc(this.ctx.storage);
    const quotaBytes = this.#config.storage.workspaceQuotaBytes;
    return this.ctx.storage.transactionSync(() => {
      const now = Date.now();
      const { state, usedBytes } = blobs.uploadState(this.#sql, input.hash, now);
      return {
        ok: true as const,
        userId: access.userId,
        state,
        usedBytes,
        intent: intents.reserveUpload(this.#sql, { ...input, userId: access.userId, quotaBytes }, state, usedBytes, now),
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
  async genericFileFacts(userId: string, hash: string): Promise<{ member: boolean } & blobs.FileFacts> {
    const member = await this.#access.isMember(userId);
    return { member, ...blobs.fileFacts(this.#sql, hash) };
  }
  /** Commit: the stored bytes checked (blob-objects.ts), then recorded and charged against the storage quota in one transaction (commit's one quota check). */
  async commitBlob(
    caller: StorageCaller,
    /** `verify`: 'always' while direct S3 uploads are enabled, 'unmarked' otherwise; 'checked' when the Worker already did (the import). */
    input: blobs.CommitInput & { hex: string; verify: 'always' | 'unmarked' | 'checked' },
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
    const outcome = this.ctx.storage.transactionSync(() => blobs.commitBlob(this.#sql, input, this.#config.storage.workspaceQuotaBytes, Date.now()));
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
  /** Blob GC (blob-objects.ts), as the alarm runs it, with the route's cooldown (OR3_STORAGE_GC_COOLDOWN_MS, read here). */
  async collectBlobs(caller: StorageCaller, options: Omit<BlobGcOptions, 'cooldownMs'>): Promise<({ userId: string } & BlobGcResult) | Failure> {
    const access = await this.#storageAccess(caller);
    if (!access.ok) return access;
    const result = await collectBlobs(this.ctx.storage, this.env.BLOBS, caller.workspaceId, {
      ...options,
      cooldownMs: this.#config.storage.gcCooldownMs,
    });
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
  webhookClaim(messages: DeliveryMessage[]): ClaimReply {
    return this.#webhooks.claim(messages, Date.now());
  }
  webhookReport(reports: AttemptReport[]): void {
    this.#webhooks.report(reports, this.#config.webhooks.disableAfterMs, Date.now());
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
  /** A token's scope and its rate limit (OR3_SERVICE_TOKEN_RATE_LIMIT_PER_MINUTE, read here). */
  #serviceAccess(credential: ServiceCredential, scope: Scope): ServiceAccess | Failure {
    return this.#restoring ? RESTORING : this.#service.authorize(credential, scope, this.#config.service.rateLimitPerMinute, Date.now());
  }
  /** The service API's reads: a thread's messages in conversation order, one row. */
  serviceRead(credential: ServiceCredential, request: ReadRequest): ({ token: ServiceAccess } & ReadReply) | Failure {
    const access = this.#serviceAccess(credential, 'read');
    if ('ok' in access) return access;
    const reply = read(this.#sql, request);
    return reply.ok ? { ...reply, token: access } : reply;
  }
  /** A service token's push (write scope), stamped by the server; `stream`: an interim put of a streamed row. */
  async servicePush(
    credential: ServiceCredential,
    workspaceId: string,
    ops: ServiceOp[],
    options: { stream: boolean },
  ): Promise<{ ok: true; results: PushResult[]; serverVersion: number; token: ServiceAccess } | Failure> {
    const access = this.#serviceAccess(credential, 'write');
    if ('ok' in access) return access;
    const prepared = await prepareServiceOps(this.#sql, this.#clock, access, workspaceId, ops);
    if (!Array.isArray(prepared)) return prepared;
    // Checked again after the await: a revocation that arrived meanwhile wins.
    const revoked = this.#service.stillValid(credential, 'write', Date.now());
    if (revoked) return revoked;
    const outcome = await this.#sync.commit(workspaceId, prepared, access.actor, { stream: options.stream });
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
