/**
 * A workspace's webhooks, inside its Durable Object (docs/webhooks.md): the hooks, the events
 * recorded after commits, and the delivery log. The hooks are read from SQLite once and kept in
 * memory, so a push asks "does any hook want this?" at no cost, and with no hook the push path
 * does nothing at all. A commit's events are one outbox row written in the push's own
 * transaction, so a commit and its events are durable together; after the commit the object hands
 * them to the Queue (`flush`, deliveries.ts), never awaiting it on the push's path.
 *
 * The same class serves the deployment admins' hooks in the object named DEPLOYMENT_OBJECT.
 */
import { logEvent } from '../http/logger';
import * as log from './deliveries';
import type { HookRow } from './deliveries';
import { eventName, subscribed, type AppliedWrite } from './events';
import { newSecret } from './signing';

export type { AttemptReport, ClaimReply, DeliveryMessage, DeliveryTarget, DeliveryView } from './deliveries';

export { DEPLOYMENT_OBJECT } from '../events/deployment';
/** Hooks per workspace, and for the deployment. */
export const MAX_HOOKS = 20;
/** Delivery log entries kept this long (OR3 keeps 72 h). */
export const LOG_RETENTION_MS = 72 * 3600 * 1000;

/** A hook as the API shows it: never its secret. */
export interface HookView {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  createdAt: number;
  updatedAt: number;
  failingSince: number | null;
  disabledReason: string | null;
  previousSecretValidUntil: number | null;
}

export const viewOf = (h: HookRow, now = Date.now()): HookView => ({
  id: h.id,
  url: h.url,
  events: JSON.parse(h.events) as string[],
  enabled: h.enabled === 1,
  createdAt: h.created_at,
  updatedAt: h.updated_at,
  failingSince: h.failing_since,
  disabledReason: h.disabled_reason,
  previousSecretValidUntil: h.previous_secret && h.previous_until && h.previous_until > now ? h.previous_until : null,
});

/** The shortest time between two hand-overs of the outbox to the Queue (`flush`): what a delivery may wait on a busy workspace. */
export const ENQUEUE_WINDOW_MS = 200;

export class WebhookRegistry {
  /** The hooks, as stored; null until first read. */
  #hooks: HookRow[] | null = null;
  /** The enabled hooks' event filters, parsed once per read of the hooks (a push consults them). */
  #filters: { id: string; events: string[] }[] | null = null;
  #flushing: Promise<void> | null = null;
  #again = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #prunedAt = 0;
  /** When the outbox was last handed to the Queue (see `flush`). */
  #sentAt = 0;
  #lookedForLeftovers = false;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly queue: () => Queue | undefined,
  ) {}

  get #sql() {
    return this.ctx.storage.sql;
  }

  hooks(): HookRow[] {
    this.#hooks ??= this.#sql.exec<HookRow>('SELECT * FROM webhooks ORDER BY created_at').toArray();
    return this.#hooks;
  }
  view(h: HookRow, now: number): HookView {
    return viewOf(h, now);
  }
  hook(id: string): HookRow | undefined {
    return this.hooks().find((h) => h.id === id);
  }
  /** Drops the cached hooks after a write to them. */
  changed() {
    this.#hooks = null;
    this.#filters = null;
  }

  create(input: { url: string; events: string[]; enabled: boolean; createdBy: string }, now: number): { hook: HookView; secret: string } | null {
    if (this.hooks().length >= MAX_HOOKS) return null;
    const id = crypto.randomUUID();
    const secret = newSecret();
    this.#sql.exec(
      `INSERT INTO webhooks (id, url, events, enabled, secret, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      id,
      input.url,
      JSON.stringify(input.events),
      input.enabled ? 1 : 0,
      secret,
      input.createdBy,
      now,
      now,
    );
    this.changed();
    return { hook: viewOf(this.hook(id)!, now), secret };
  }

  /** Re-enabling a hook clears why it was disabled and its failure streak. */
  update(id: string, patch: { url?: string; events?: string[]; enabled?: boolean }, now: number): HookView | null {
    const hook = this.hook(id);
    if (!hook) return null;
    const enabled = patch.enabled ?? hook.enabled === 1;
    const revived = enabled && hook.enabled !== 1;
    this.#sql.exec(
      `UPDATE webhooks SET url = ?, events = ?, enabled = ?, updated_at = ?,
         disabled_reason = CASE WHEN ? THEN NULL ELSE disabled_reason END, failing_since = CASE WHEN ? THEN NULL ELSE failing_since END
       WHERE id = ?`,
      patch.url ?? hook.url,
      patch.events ? JSON.stringify(patch.events) : hook.events,
      enabled ? 1 : 0,
      now,
      revived ? 1 : 0,
      revived ? 1 : 0,
      id,
    );
    this.changed();
    return viewOf(this.hook(id)!, now);
  }

  remove(id: string): boolean {
    if (!this.hook(id)) return false;
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec('DELETE FROM webhooks WHERE id = ?', id);
      this.#sql.exec('DELETE FROM webhook_deliveries WHERE hook_id = ?', id);
    });
    this.changed();
    return true;
  }

  /** A new secret; the old one keeps signing (as a second `webhook-signature` entry) for `graceMs`. */
  rotate(id: string, graceMs: number, now: number): { hook: HookView; secret: string } | null {
    const hook = this.hook(id);
    if (!hook) return null;
    const secret = newSecret();
    this.#sql.exec(
      'UPDATE webhooks SET secret = ?, previous_secret = ?, previous_until = ?, updated_at = ? WHERE id = ?',
      secret,
      hook.secret,
      now + graceMs,
      now,
      id,
    );
    this.changed();
    return { hook: viewOf(this.hook(id)!, now), secret };
  }

  /**
   * Records the events of a commit, inside its transaction: one outbox row listing, for each
   * winning write some enabled hook subscribes to, its event and those hooks. One statement
   * whatever the batch's size; nothing at all without hooks. Returns how many deliveries wait.
   */
  record(applied: AppliedWrite[]): number {
    const filters = (this.#filters ??= this.hooks().flatMap((h) => (h.enabled === 1 ? [{ id: h.id, events: JSON.parse(h.events) as string[] }] : [])));
    if (!filters.length || !applied.length) return 0;
    const events: log.OutboxEvent[] = [];
    let deliveries = 0;
    // A batch holds a handful of event names: each is matched against the filters once.
    const takers = new Map<string, string[]>();
    for (const write of applied) {
      const event = eventName(write);
      let hooks = takers.get(event);
      if (!hooks) takers.set(event, (hooks = filters.filter((f) => subscribed(f.events, event)).map((f) => f.id)));
      if (!hooks.length) continue;
      events.push([crypto.randomUUID(), write.version, event, hooks]);
      deliveries += hooks.length;
    }
    log.addToOutbox(this.#sql, events);
    return deliveries;
  }

  /** Records one event of the caller's making (a test ping, a deployment event) for the hooks that take it, or for `onlyHook`. */
  emit(event: string, body: (eventId: string) => string, now: number, onlyHook?: string): { eventId: string; deliveryIds: string[] } {
    const hooks = onlyHook
      ? this.hooks().filter((h) => h.id === onlyHook)
      : this.hooks().filter((h) => h.enabled === 1 && subscribed(JSON.parse(h.events) as string[], event));
    const eventId = crypto.randomUUID();
    if (!hooks.length) return { eventId, deliveryIds: [] };
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec('INSERT INTO webhook_events (id, event, body, created_at) VALUES (?, ?, ?, ?)', eventId, event, body(eventId), now);
      log.addToOutbox(this.#sql, [[eventId, null, event, hooks.map((h) => h.id)]]);
    });
    return { eventId, deliveryIds: hooks.map((h) => log.deliveryId({ e: eventId, h: h.id })) };
  }

  /**
   * Hands the outbox to the Queue. Runs after the commit (the caller does not await it on a
   * push); one flush at a time, and one asked for meanwhile runs again after it. A failed send
   * leaves the rest in the outbox: it goes with the next flush, or a retry 5 s later.
   *
   * At most one hand-over per ENQUEUE_WINDOW_MS: a commit after a quiet spell goes at once,
   * commits that follow within the window wait for its end and go together, in one `sendBatch`.
   * Each call costs the object a round trip whatever it carries (measured: docs/performance.md
   * "Webhooks"), so a busy workspace pays one per window rather than one per commit.
   */
  flush(objectName: string): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return this.#flushing;
    }
    this.#flushing = (async () => {
      do {
        this.#again = false;
        const wait = this.#sentAt + ENQUEUE_WINDOW_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        this.#sentAt = Date.now();
        await this.#flushOnce(objectName);
      } while (this.#again);
    })().finally(() => (this.#flushing = null));
    return this.#flushing;
  }

  async #flushOnce(objectName: string) {
    const queue = this.queue();
    if (!queue) return;
    try {
      await log.flushOutbox(this.#sql, queue, objectName);
    } catch (err) {
      logEvent('warn', 'webhook_enqueue_failed', { objectName, message: err instanceof Error ? err.message : String(err) });
      this.#retryTimer ??= setTimeout(() => {
        this.#retryTimer = null;
        void this.flush(objectName);
      }, 5_000);
      return;
    }
    const now = Date.now();
    if (now - this.#prunedAt >= 3600_000) {
      this.#prunedAt = now;
      log.prune(this.#sql, now - LOG_RETENTION_MS);
    }
  }

  /**
   * Once per instance: whether an earlier instance left events in the outbox (it was evicted
   * between a commit and its flush, or its flush failed).
   */
  leftOver(): boolean {
    if (this.#lookedForLeftovers) return false;
    this.#lookedForLeftovers = true;
    return this.#sql.exec('SELECT 1 FROM webhook_outbox LIMIT 1').toArray().length > 0;
  }

  claim(messages: log.DeliveryMessage[], now: number): log.ClaimReply {
    return log.claim(this.#sql, (id) => this.hook(id), messages, now);
  }

  /**
   * Records attempts: a success ends the hook's failure streak; a failure starts one; a delivery
   * that fails for good while the streak is older than `disableAfterMs` (a day by default)
   * disables the hook, with the reason shown to its owners.
   */
  report(reports: log.AttemptReport[], disableAfterMs: number, now: number): void {
    this.ctx.storage.transactionSync(() => {
      log.writeReports(this.#sql, reports, now);
      for (const r of reports) {
        const hook = this.hook(r.message.h);
        if (!hook) continue;
        if (r.ok) {
          if (hook.failing_since !== null) this.#setHook(hook.id, 'failing_since = NULL');
        } else if (hook.failing_since === null) {
          this.#setHook(hook.id, 'failing_since = ?', now);
        } else if (r.final && hook.enabled === 1 && now - hook.failing_since >= disableAfterMs) {
          const last = r.status ? `HTTP ${r.status}` : (r.error ?? 'no response');
          const reason = `Disabled ${new Date(now).toISOString()}: every delivery has failed since ${new Date(hook.failing_since).toISOString()} (last: ${last})`;
          this.#setHook(hook.id, 'enabled = 0, disabled_reason = ?, updated_at = ?', reason, now);
          logEvent('warn', 'webhook_disabled', { hookId: hook.id, reason });
        }
      }
    });
  }

  #setHook(id: string, assignments: string, ...values: SqlStorageValue[]) {
    this.#sql.exec(`UPDATE webhooks SET ${assignments} WHERE id = ?`, ...values, id);
    this.changed();
  }

  deadLettered(messages: log.DeliveryMessage[], now: number): void {
    log.deadLettered(this.#sql, messages, now);
  }

  deliveries(hookId: string, limit: number): log.DeliveryView[] {
    return log.listDeliveries(this.#sql, hookId, limit);
  }

  redeliver(hookId: string, deliveryId: string): boolean {
    return log.redeliver(this.#sql, hookId, deliveryId);
  }
}
