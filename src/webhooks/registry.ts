/**
 * A workspace's webhooks, inside its Durable Object (docs/webhooks.md): the hooks, the events
 * recorded after commits, and the delivery log. The hooks are read from SQLite once and kept in
 * memory, so a push asks "does any hook want this?" at no cost, and with no hook the push path
 * does nothing at all. Events are written in the push's own transaction (an outbox: a delivery
 * whose `queued` is 0), so a commit and its events are durable together; after the commit the
 * object hands them to the Queue (`flush`), never awaiting it on the push's path.
 *
 * The same class serves the deployment admins' hooks in the object named DEPLOYMENT_OBJECT.
 */
import { logEvent } from '../http/logger';
import { eventBody, eventName, subscribed, type Actor, type AppliedWrite } from './events';
import { newSecret } from './signing';

export { DEPLOYMENT_OBJECT } from '../events/deployment';
/** Hooks per workspace, and for the deployment. */
export const MAX_HOOKS = 20;
/** Delivery log entries kept this long (OR3 keeps 72 h). */
export const LOG_RETENTION_MS = 72 * 3600 * 1000;
/** Messages per sendBatch (the Queue's limit is 100 messages or 256 KB). */
const SEND_BATCH = 100;

export type HookRow = {
  id: string;
  url: string;
  events: string;
  enabled: number;
  secret: string;
  previous_secret: string | null;
  previous_until: number | null;
  created_by: string;
  created_at: number;
  updated_at: number;
  failing_since: number | null;
  disabled_reason: string | null;
};

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

export interface DeliveryView {
  id: string;
  eventId: string;
  event: string;
  status: 'pending' | 'success' | 'failed';
  attempts: number;
  lastResponseCode: number | null;
  lastAttemptAt: number | null;
  lastError: string | null;
  createdAt: number;
}

/** What the Queue consumer needs to make one attempt. */
export interface DeliveryTarget {
  id: string;
  url: string;
  eventId: string;
  event: string;
  body: string;
  /** The current secret first, then a previous one still honoured. */
  secrets: string[];
}

/** One attempt's outcome, reported by the consumer. `final`: no retry follows. */
export interface AttemptReport {
  id: string;
  ok: boolean;
  status: number | null;
  error: string | null;
  final: boolean;
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

export class WebhookRegistry {
  /** The hooks, as stored; null until first read. */
  #hooks: HookRow[] | null = null;
  #flushing: Promise<void> | null = null;
  #again = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #prunedAt = 0;
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
   * Records the events of a commit, inside its transaction: one event per winning write some
   * enabled hook subscribes to, one delivery per such hook. Returns how many deliveries wait
   * for `flush`. Two statements whatever the batch's size; nothing at all without hooks.
   */
  record(workspaceId: string, applied: AppliedWrite[], actor: Actor, now: number): number {
    const live = this.hooks().filter((h) => h.enabled === 1);
    if (!live.length || !applied.length) return 0;
    const filters = live.map((h) => ({ id: h.id, events: JSON.parse(h.events) as string[] }));
    const events: unknown[][] = [];
    const deliveries: unknown[][] = [];
    for (const write of applied) {
      const event = eventName(write);
      const targets = filters.filter((f) => subscribed(f.events, event));
      if (!targets.length) continue;
      const eventId = crypto.randomUUID();
      events.push([eventId, event, eventBody({ eventId, event, workspaceId, write, actor, now })]);
      for (const t of targets) deliveries.push([crypto.randomUUID(), t.id, eventId, event]);
    }
    return this.#insert(events, deliveries, now);
  }

  /** Records one event of the caller's making (a test ping, a deployment event) for the hooks that take it, or for `onlyHook`. */
  emit(event: string, body: (eventId: string) => string, now: number, onlyHook?: string): { eventId: string; deliveryIds: string[] } {
    const hooks = onlyHook
      ? this.hooks().filter((h) => h.id === onlyHook)
      : this.hooks().filter((h) => h.enabled === 1 && subscribed(JSON.parse(h.events) as string[], event));
    const eventId = crypto.randomUUID();
    if (!hooks.length) return { eventId, deliveryIds: [] };
    const deliveries = hooks.map((h) => [crypto.randomUUID(), h.id, eventId, event]);
    this.ctx.storage.transactionSync(() => this.#insert([[eventId, event, body(eventId)]], deliveries, now));
    return { eventId, deliveryIds: deliveries.map((d) => d[0] as string) };
  }

  #insert(events: unknown[][], deliveries: unknown[][], now: number): number {
    if (!deliveries.length) return 0;
    this.#sql.exec(
      'INSERT INTO webhook_events (id, event, body, created_at) SELECT value ->> 0, value ->> 1, value ->> 2, ? FROM json_each(?)',
      now,
      JSON.stringify(events),
    );
    this.#sql.exec(
      `INSERT INTO webhook_deliveries (id, hook_id, event_id, event, status, attempts, queued, created_at)
       SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'pending', 0, 0, ? FROM json_each(?)`,
      now,
      JSON.stringify(deliveries),
    );
    return deliveries.length;
  }

  /**
   * Hands recorded deliveries to the Queue, in batches, marking them queued. Runs after the
   * commit (the caller does not await it on a push); one flush at a time, and a flush asked for
   * meanwhile runs again after it. A failed send leaves the deliveries unqueued: they go with
   * the next flush, or a retry 5 s later.
   */
  flush(workspaceId: string): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return this.#flushing;
    }
    this.#flushing = (async () => {
      do {
        this.#again = false;
        await this.#flushOnce(workspaceId);
      } while (this.#again);
    })().finally(() => (this.#flushing = null));
    return this.#flushing;
  }

  async #flushOnce(workspaceId: string) {
    const queue = this.queue();
    if (!queue) return;
    for (;;) {
      const ids = this.#sql
        .exec<{ id: string }>('SELECT id FROM webhook_deliveries WHERE queued = 0 ORDER BY created_at LIMIT ?', SEND_BATCH)
        .toArray()
        .map((r) => r.id);
      if (!ids.length) break;
      try {
        await queue.sendBatch(ids.map((d) => ({ body: { w: workspaceId, d }, contentType: 'json' as const })));
      } catch (err) {
        logEvent('warn', 'webhook_enqueue_failed', { workspaceId, count: ids.length, message: err instanceof Error ? err.message : String(err) });
        this.#retryTimer ??= setTimeout(() => {
          this.#retryTimer = null;
          void this.flush(workspaceId);
        }, 5_000);
        return;
      }
      this.#sql.exec('UPDATE webhook_deliveries SET queued = 1 WHERE id IN (SELECT value FROM json_each(?))', JSON.stringify(ids));
      if (ids.length < SEND_BATCH) break;
    }
    this.#prune(Date.now());
  }

  /**
   * Once per instance: whether deliveries recorded by an earlier instance still wait for the
   * Queue (it was evicted between a commit and its flush, or its flush failed).
   */
  leftOver(): boolean {
    if (this.#lookedForLeftovers) return false;
    this.#lookedForLeftovers = true;
    return this.#sql.exec('SELECT 1 FROM webhook_deliveries WHERE queued = 0 LIMIT 1').toArray().length > 0;
  }

  /** The consumer's view of the deliveries it got from the Queue; null for one that is done, gone, or whose hook is off. */
  claim(ids: string[], now: number): (DeliveryTarget | null)[] {
    return ids.map((id) => {
      const row = this.#sql
        .exec<{ hook_id: string; event_id: string; event: string; status: string; body: string | null }>(
          `SELECT d.hook_id, d.event_id, d.event, d.status, e.body FROM webhook_deliveries d LEFT JOIN webhook_events e ON e.id = d.event_id WHERE d.id = ?`,
          id,
        )
        .toArray()[0];
      if (!row || row.status !== 'pending' || row.body === null) return null;
      const hook = this.hook(row.hook_id);
      if (!hook) return null;
      if (hook.enabled !== 1) {
        this.#sql.exec(`UPDATE webhook_deliveries SET status = 'failed', last_error = 'The webhook is disabled' WHERE id = ?`, id);
        return null;
      }
      const secrets = [hook.secret];
      if (hook.previous_secret && hook.previous_until && hook.previous_until > now) secrets.push(hook.previous_secret);
      return { id, url: hook.url, eventId: row.event_id, event: row.event, body: row.body, secrets };
    });
  }

  /**
   * Records attempts: a success ends the hook's failure streak; a failure starts one; a delivery
   * that fails for good while the streak is older than `disableAfterMs` (a day by default)
   * disables the hook, with the reason shown to its owners.
   */
  report(reports: AttemptReport[], disableAfterMs: number, now: number): void {
    this.ctx.storage.transactionSync(() => {
      for (const r of reports) {
        const status = r.ok ? 'success' : r.final ? 'failed' : 'pending';
        const hookId = this.#sql
          .exec<{ hook_id: string }>(
            `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_response_code = ?, last_attempt_at = ?, last_error = ?
             WHERE id = ? AND status = 'pending' RETURNING hook_id`,
            status,
            r.status,
            now,
            r.error,
            r.id,
          )
          .toArray()[0]?.hook_id;
        const hook = hookId ? this.hook(hookId) : undefined;
        if (!hook) continue;
        if (r.ok) {
          if (hook.failing_since !== null) this.#sql.exec('UPDATE webhooks SET failing_since = NULL WHERE id = ?', hook.id);
        } else if (hook.failing_since === null) {
          this.#sql.exec('UPDATE webhooks SET failing_since = ? WHERE id = ?', now, hook.id);
        } else if (r.final && hook.enabled === 1 && now - hook.failing_since >= disableAfterMs) {
          const reason = `Disabled ${new Date(now).toISOString()}: every delivery has failed since ${new Date(hook.failing_since).toISOString()} (last: ${r.status ? `HTTP ${r.status}` : (r.error ?? 'no response')})`;
          this.#sql.exec('UPDATE webhooks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ?', reason, now, hook.id);
          logEvent('warn', 'webhook_disabled', { hookId: hook.id, reason });
        }
        this.changed();
      }
    });
  }

  /** Deliveries the Queue dead-lettered: failed, for good. */
  deadLettered(ids: string[], now: number): void {
    this.#sql.exec(
      `UPDATE webhook_deliveries SET status = 'failed', last_error = coalesce(last_error, 'Dead-lettered'), last_attempt_at = coalesce(last_attempt_at, ?)
       WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'`,
      now,
      JSON.stringify(ids),
    );
  }

  deliveries(hookId: string, limit: number): DeliveryView[] {
    return this.#sql
      .exec<Record<string, SqlStorageValue>>(
        `SELECT id, event_id, event, status, attempts, last_response_code, last_attempt_at, last_error, created_at
         FROM webhook_deliveries WHERE hook_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`,
        hookId,
        limit,
      )
      .toArray()
      .map((r) => ({
        id: r.id as string,
        eventId: r.event_id as string,
        event: r.event as string,
        status: r.status as DeliveryView['status'],
        attempts: r.attempts as number,
        lastResponseCode: r.last_response_code as number | null,
        lastAttemptAt: r.last_attempt_at as number | null,
        lastError: r.last_error as string | null,
        createdAt: r.created_at as number,
      }));
  }

  /** Sends a delivery again, with the same event id and body; false when there is no such delivery (or its event was pruned). */
  redeliver(hookId: string, deliveryId: string): boolean {
    const rows = this.#sql
      .exec(
        `UPDATE webhook_deliveries SET status = 'pending', queued = 0 WHERE id = ? AND hook_id = ?
           AND EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = webhook_deliveries.event_id) RETURNING id`,
        deliveryId,
        hookId,
      )
      .toArray();
    return rows.length > 0;
  }

  /** Drops log entries past retention (at most hourly, a bounded number at a time). */
  #prune(now: number) {
    if (now - this.#prunedAt < 3600_000) return;
    this.#prunedAt = now;
    const cutoff = now - LOG_RETENTION_MS;
    this.#sql.exec(
      `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at < ? AND status != 'pending' LIMIT 5000)`,
      cutoff,
    );
    this.#sql.exec(
      `DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events e WHERE created_at < ?
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) LIMIT 5000)`,
      cutoff,
    );
  }
}
