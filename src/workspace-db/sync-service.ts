/**
 * The workspace's sync, one implementation for both transports (docs/architecture.md "A socket
 * push, hop by hop"): the object's RPC methods (HTTP routes, through the Worker) and the socket
 * handler (socket-sync.ts, messages on the object's own sockets) call the same methods here.
 * Each authorizes the caller from the object's cache (access.ts), applies the caller's sync rate
 * limit, runs its statements in one transaction (or one implicit one for a read, with no
 * `await` between statements), and after a commit pokes the sockets (`poke`: sockets.ts) and
 * hands webhook events to their registry.
 */
import type { Failure } from '../errors';
import { FixedWindowLimiter, type SyncLimitName } from '../limiter';
import { WireError } from '../../protocol/errors';
import { prepareBatch, type PreparedOp, type PushOpInput, type TableName } from '../../protocol/rules';
import type { WebhookRegistry } from '../webhooks/registry';
import { PokeCoalescer } from '../service/coalesce';
import type { AccessCache } from './access';
import type { Access, ShardCaller, SyncCaller } from '../workspace-contract';
import { armGc } from './alarm';
import { updateCursor } from './cursors';
import type { Meter } from './metrics';
import type { PokeChanges } from './poke';
import { applyPush, logConflicts, type PushResult } from './push';
import { pull, readerRefusal, snapshot, type PullOutcome, type SnapshotReply } from './reads';

export const RESTORING: Failure = { ok: false, status: 503, code: 'restoring', message: 'The workspace is being restored; try again shortly', retryAfter: 5 };

/** A commit's poke, as the sockets send it (sockets.ts `poke`). */
export type PokeSockets = (from: number, to: number, perUser: boolean, built: (PokeChanges & { userId: string }) | null, pusher: WebSocket | undefined) => void;

export type PushOutcome = { ok: true; results: PushResult[]; serverVersion: number } | Failure;

export class SyncService {
  readonly #limiter = new FixedWindowLimiter();
  /** Pokes: at once for a commit, at most every 250 ms for a streamed service write (src/service/coalesce.ts). */
  readonly #pokes: PokeCoalescer<{ built: PokeChanges & { userId: string }; pusher: WebSocket | undefined }>;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly parts: {
      access: AccessCache;
      /** OR3_SYNC_WORKSPACE_QUOTA_BYTES, from the object's own configuration (settings.ts). */
      quotaBytes: () => number;
      /** Requests per user per minute under a sync limit, from the object's own configuration (settings.ts). */
      perMinute: (name: SyncLimitName) => number;
      meter: Meter;
      webhooks: WebhookRegistry;
      /** Set while a point-in-time restore is prepared: the workspace serves nothing (503). */
      restoring: () => boolean;
      poke: PokeSockets;
    },
  ) {
    this.#pokes = new PokeCoalescer((from, to, perUser, exact) => parts.poke(from, to, perUser, exact?.built ?? null, exact?.pusher));
  }

  /** Counts one request of `userId` under the caller's limit (`count` false: only asks); the 429 failure when it is over. */
  #refuse(caller: SyncCaller, userId: string, count: boolean): Failure | null {
    if (caller.limit === null) return null;
    return this.#limiter.refuseKey(`${caller.limit}:${userId}`, this.parts.perMinute(caller.limit), Date.now(), count);
  }

  /** Who the caller is here, with which role (access.ts). */
  async authorize(caller: ShardCaller): Promise<({ ok: true } & Access) | Failure> {
    return this.parts.restoring() ? RESTORING : this.parts.access.authorize(caller);
  }

  /** Authorization, then the caller's sync rate limit (counted). */
  async admit(caller: SyncCaller): Promise<({ ok: true } & Access) | Failure> {
    const access = await this.authorize(caller);
    const admitted = access.ok ? (this.#refuse(caller, access.userId, true) ?? access) : access;
    if (!admitted.ok) this.parts.meter.count(`refused_${admitted.code}`);
    return admitted;
  }

  /**
   * Whether a sync request would be admitted, without counting it: a socket asks this before it
   * parses a large frame (socket-sync.ts `admitLargeFrame`), so a viewer's or a rate-limited
   * user's megabytes cost the serial object no parsing.
   */
  async screen(caller: SyncCaller): Promise<Failure | null> {
    const access = await this.authorize(caller);
    return access.ok ? this.#refuse(caller, access.userId, false) : access;
  }

  /**
   * A device's push. `missing`: the capability
   * flags the client lacks (capabilities.ts), 0 when it has them all; `pusher`: the socket that
   * pushed and asked not to hear its own changes back.
   */
  async push(caller: SyncCaller, ops: PreparedOp[], options: { missing?: number; pusher?: WebSocket } = {}): Promise<PushOutcome> {
    const access = await this.admit(caller);
    if (!access.ok) return access;
    return this.commit(caller.workspaceId, ops, access.userId, { stream: false, ...options });
  }

  /**
   * A push whose batch is prepared here, after authorizing: a federated token's, whose user only
   * the object knows and to whom notifications are forced (as a socket's batch is). One RPC where
   * the Worker would otherwise ask `authorize` first.
   */
  async pushUnprepared(caller: SyncCaller, ops: PushOpInput[], missing = 0): Promise<PushOutcome> {
    const access = await this.admit(caller);
    if (!access.ok) return access;
    let prepared: PreparedOp[];
    try {
      prepared = await prepareBatch(ops, caller.workspaceId, access.userId);
    } catch (err) {
      if (err instanceof WireError) return { ok: false, status: err.status as Failure['status'], code: err.code, message: err.message };
      throw err;
    }
    return this.commit(caller.workspaceId, prepared, access.userId, { stream: false, missing });
  }

  /**
   * One push transaction, for a device or a service token: webhook events for its winners are
   * recorded in the same transaction and sent after it (never awaited here); a streamed write
   * (`stream`) pokes through the coalescer and raises no events until its final put. `missing`:
   * the capability flags the pusher lacks (0 for a service token, which declares them all).
   */
  async commit(
    workspaceId: string,
    ops: PreparedOp[],
    userId: string,
    { stream, missing = 0, pusher }: { stream: boolean; missing?: number; pusher?: WebSocket },
  ): Promise<PushOutcome> {
    const { meter, webhooks } = this.parts;
    let events = 0;
    const outcome = this.ctx.storage.transactionSync(() => {
      const applied = applyPush(this.ctx.storage.sql, ops, userId, Date.now(), this.parts.quotaBytes(), missing);
      if (applied.ok && !stream) events = webhooks.record(applied.applied);
      return applied;
    });
    if (!outcome.ok) return outcome;
    if (events > 0 || webhooks.leftOver()) this.ctx.waitUntil(webhooks.flush(workspaceId));
    logConflicts(workspaceId, outcome.conflicts);
    meter.counted(['ops_pushed', ops.length], ['bytes_in', ops.reduce((n, op) => n + op.bytes, 0)]);
    const { results, serverVersion, allocated } = outcome;
    const perUser = ops.some((op) => op.tableName === 'notifications');
    // Synchronously after the transaction: the range holds exactly this push's changes.
    if (allocated > 0) {
      const exact = outcome.poke && { built: { ...outcome.poke, userId }, pusher };
      this.#pokes.committed(serverVersion - allocated, serverVersion, perUser, stream, exact);
      await armGc(this.ctx.storage);
    }
    return { ok: true as const, results, serverVersion };
  }

  async pull(
    caller: SyncCaller,
    input: { cursor: number; limit: number; tables?: TableName[]; missing?: number },
  ): Promise<({ ok: true } & PullOutcome) | Failure> {
    const access = await this.admit(caller);
    if (!access.ok) return access;
    // A read: one implicit transaction is enough, and no await separates its statements.
    const sql = this.ctx.storage.sql;
    const refused = readerRefusal(sql, input.missing ?? 0, input.tables);
    if (refused) return refused;
    const page = pull(sql, { ...input, userId: access.userId });
    this.parts.meter.counted(['ops_pulled', page.count], ['bytes_out', page.changesJson.length]);
    return { ok: true, ...page };
  }

  /** What a device has applied, for retention (cursors.ts). */
  async updateCursor(caller: SyncCaller, input: { deviceId: string; version: number }): Promise<{ ok: true } | Failure> {
    const access = await this.admit(caller);
    if (!access.ok) return access;
    return this.ctx.storage.transactionSync(() => updateCursor(this.ctx.storage.sql, { ...input, userId: access.userId }, Date.now()));
  }

  async snapshot(
    caller: SyncCaller,
    input: { pageSize: number; pageToken?: string; tables?: TableName[]; missing?: number },
  ): Promise<SnapshotReply | Failure> {
    const access = await this.admit(caller);
    if (!access.ok) return access;
    const sql = this.ctx.storage.sql;
    return readerRefusal(sql, input.missing ?? 0, input.tables) ?? snapshot(sql, { ...input, userId: access.userId });
  }
}
