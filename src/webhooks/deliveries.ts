/**
 * The outbox and the delivery log, inside the object that holds the hooks (docs/webhooks.md
 * "Delivery"). A commit writes one outbox row naming its events; `flushOutbox` turns the rows
 * into Queue messages of up to DELIVERIES_PER_MESSAGE deliveries (event, hook) each, sent with
 * one `sendBatch`, and deletes them: a commit of 100 ops with 3 hooks enqueues 12 messages, not
 * 300 (docs/performance.md "Webhooks"). The Queue consumer then asks for each
 * delivery's target and body (`claim`) and reports each attempt (`report`). The body of a
 * workspace event is built from the change log (the winning write is there, at its version), so
 * the push path copies no payloads. The log's entries are written by the reports, never on the
 * push path; an entry's id is `<eventId>:<hookId>`.
 */
import { eventBody } from './events';

/** A webhook as stored in the object (drizzle/workspace.ts `webhooks`); the registry reads it, the log claims deliveries for it. */
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

/** An outbox entry: `[eventId, serverVersion | null, event, hookIds]` (null: the body is in webhook_events). */
export type OutboxEvent = [string, number | null, string, string[]];

/** One delivery: the object (`w`), the event (`e`, its name `n`, its change-log version `v`) and the hook (`h`). */
export interface DeliveryMessage {
  w: string;
  e: string;
  h: string;
  n: string;
  v: number | null;
}

/**
 * A Queue message: deliveries of one object (`w`) as `[event, hook, name, version]`, after `a`
 * attempts made already (0 from the outbox; a retry carries its failed deliveries on).
 */
export interface DeliveryBatch {
  w: string;
  a: number;
  d: [string, string, string, number | null][];
}

/** Deliveries per Queue message; wrangler.toml's `max_batch_size` × this bounds one consumer invocation's attempts (100). */
export const DELIVERIES_PER_MESSAGE = 25;

export const batchOf = (w: string, a: number, deliveries: DeliveryMessage[]): DeliveryBatch => ({ w, a, d: deliveries.map((m) => [m.e, m.h, m.n, m.v]) });
export const deliveriesOf = (batch: DeliveryBatch): DeliveryMessage[] => batch.d.map(([e, h, n, v]) => ({ w: batch.w, e, h, n, v }));

/** What the Queue consumer needs to make one attempt. */
export interface DeliveryTarget {
  url: string;
  eventId: string;
  event: string;
  body: string;
  /** The current secret first, then a previous one still honoured. */
  secrets: string[];
}

/** One attempt's outcome. `final`: no retry follows (the delivery has failed for good). */
export interface AttemptReport {
  message: DeliveryMessage;
  ok: boolean;
  status: number | null;
  error: string | null;
  final: boolean;
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

export const deliveryId = (m: { e: string; h: string }) => `${m.e}:${m.h}`;
/** Messages per sendBatch (the Queue takes at most 100, or 256 KB: 100 × 25 deliveries of ~120 bytes is ~300 KB, so 50). */
const SEND_BATCH = 50;
/** Outbox rows handed over per round. */
const OUTBOX_ROWS = 10;

/**
 * An outbox row as stored: each distinct list of hooks once (`s`), and the events as `[eventId,
 * version, event, index into s]`: a commit's events mostly share one list, so the row written in
 * the push's transaction stays small (about 70 bytes an event, whatever the number of hooks).
 */
type StoredOutbox = { s: string[][]; e: [string, number | null, string, number][] };

export function addToOutbox(sql: SqlStorage, events: OutboxEvent[]) {
  if (!events.length) return;
  const sets = new Map<string[], number>();
  const stored: StoredOutbox = { s: [], e: [] };
  for (const [e, v, n, hooks] of events) {
    let at = sets.get(hooks);
    if (at === undefined) sets.set(hooks, (at = stored.s.push(hooks) - 1));
    stored.e.push([e, v, n, at]);
  }
  sql.exec('INSERT INTO webhook_outbox (events) VALUES (?)', JSON.stringify(stored));
}

/** A stored outbox row's events; rows written before the compact form are lists of OutboxEvent. */
function outboxEvents(text: string): OutboxEvent[] {
  const parsed = JSON.parse(text) as StoredOutbox | OutboxEvent[];
  return Array.isArray(parsed) ? parsed : parsed.e.map(([e, v, n, at]) => [e, v, n, parsed.s[at] ?? []]);
}

/** Hands the outbox to the Queue; throws when a send fails (what was not sent stays). */
export async function flushOutbox(sql: SqlStorage, queue: Queue, objectName: string): Promise<void> {
  for (;;) {
    const rows = sql.exec<{ id: number; events: string }>('SELECT id, events FROM webhook_outbox ORDER BY id LIMIT ?', OUTBOX_ROWS).toArray();
    if (!rows.length) return;
    const deliveries = rows.flatMap((r) => outboxEvents(r.events).flatMap(([e, v, n, hooks]) => hooks.map((h): DeliveryBatch['d'][number] => [e, h, n, v])));
    const messages = [];
    for (let i = 0; i < deliveries.length; i += DELIVERIES_PER_MESSAGE) {
      const body: DeliveryBatch = { w: objectName, a: 0, d: deliveries.slice(i, i + DELIVERIES_PER_MESSAGE) };
      messages.push({ body, contentType: 'json' as const });
    }
    for (let i = 0; i < messages.length; i += SEND_BATCH) await queue.sendBatch(messages.slice(i, i + SEND_BATCH));
    sql.exec('DELETE FROM webhook_outbox WHERE id IN (SELECT value FROM json_each(?))', JSON.stringify(rows.map((r) => r.id)));
    if (rows.length < OUTBOX_ROWS) return;
  }
}

type ChangeRow = {
  server_version: number;
  table_name: string;
  pk: string;
  op: 'put' | 'delete';
  payload: string | null;
  device_id: string;
  user_id: string;
  created_at: number;
};

/**
 * What a claim answers: each event's body once (`bodies`), and per delivery its target with the
 * index of its body, or null where there is nothing to send. A commit's event goes to every hook
 * subscribed, so bodies shared by index cross the RPC once, not once per hook.
 */
export interface ClaimReply {
  bodies: string[];
  targets: ((Omit<DeliveryTarget, 'body'> & { body: number }) | null)[];
}

/** The claimed targets with their bodies (the consumer's view of a ClaimReply). */
export const claimedTargets = (reply: ClaimReply): (DeliveryTarget | null)[] => reply.targets.map((t) => (t ? { ...t, body: reply.bodies[t.body]! } : null));

/**
 * The bodies of the messages' events, by event id: rebuilt from each change-log entry (the same
 * text on every attempt), or as stored for events without one. One query for each kind.
 */
function bodiesOf(sql: SqlStorage, messages: DeliveryMessage[]): Map<string, string> {
  const bodies = new Map<string, string>();
  const versions = [...new Set(messages.flatMap((m) => (m.v === null ? [] : [m.v])))];
  const stored = [...new Set(messages.flatMap((m) => (m.v === null ? [m.e] : [])))];
  if (versions.length) {
    const changes = new Map(
      sql
        .exec<ChangeRow>(
          'SELECT server_version, table_name, pk, op, payload, device_id, user_id, created_at FROM change_log WHERE server_version IN (SELECT value FROM json_each(?))',
          JSON.stringify(versions),
        )
        .toArray()
        .map((c) => [c.server_version, c]),
    );
    for (const m of messages) {
      const c = m.v === null ? undefined : changes.get(m.v);
      if (!c || bodies.has(m.e)) continue;
      const write = {
        op: { tableName: c.table_name, pk: c.pk, op: c.op, payload: c.payload, deviceId: c.device_id },
        version: c.server_version,
        existed: false,
      };
      bodies.set(m.e, eventBody({ eventId: m.e, event: m.n, workspaceId: m.w, write, actor: { userId: c.user_id }, now: c.created_at }));
    }
  }
  if (stored.length) {
    for (const row of sql.exec<{ id: string; body: string }>(
      'SELECT id, body FROM webhook_events WHERE id IN (SELECT value FROM json_each(?))',
      JSON.stringify(stored),
    )) {
      bodies.set(row.id, row.body);
    }
  }
  return bodies;
}

/** Targets for the consumer; null where there is nothing to send (done already, hook gone or off, event gone). */
export function claim(sql: SqlStorage, hooks: (id: string) => HookRow | undefined, messages: DeliveryMessage[], now: number): ClaimReply {
  const ended: AttemptReport[] = [];
  const done = new Set(
    sql
      .exec<{ id: string }>(
        "SELECT id FROM webhook_deliveries WHERE id IN (SELECT value FROM json_each(?)) AND status != 'pending'",
        JSON.stringify(messages.map(deliveryId)),
      )
      .toArray()
      .map((r) => r.id),
  );
  const texts = bodiesOf(sql, messages);
  const bodies: string[] = [];
  const at = new Map<string, number>();
  const targets = messages.map((m) => {
    const hook = hooks(m.h);
    if (!hook) return null;
    if (done.has(deliveryId(m))) return null; // a duplicate message (at least once)
    const fail = (error: string) => (ended.push({ message: m, ok: false, status: null, error, final: true }), null);
    if (hook.enabled !== 1) return fail('The webhook is disabled');
    const text = texts.get(m.e);
    if (text === undefined) return fail('The event is no longer available');
    let body = at.get(m.e);
    if (body === undefined) at.set(m.e, (body = bodies.push(text) - 1));
    const secrets = [hook.secret];
    if (hook.previous_secret && hook.previous_until && hook.previous_until > now) secrets.push(hook.previous_secret);
    return { url: hook.url, eventId: m.e, event: m.n, body, secrets };
  });
  if (ended.length) writeReports(sql, ended, now, false);
  return { bodies, targets };
}

/** Writes attempts into the log (one statement); `count`: whether they count as attempts. */
export function writeReports(sql: SqlStorage, reports: AttemptReport[], now: number, count = true) {
  const rows = reports.map((r) => [
    deliveryId(r.message),
    r.message.h,
    r.message.e,
    r.message.n,
    r.message.v,
    r.ok ? 'success' : r.final ? 'failed' : 'pending',
    r.status,
    r.error,
  ]);
  sql.exec(
    `INSERT INTO webhook_deliveries (id, hook_id, event_id, event, server_version, status, attempts, last_response_code, last_attempt_at, last_error, created_at)
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?3, value ->> 6, ?2, value ->> 7, ?2 FROM json_each(?1) WHERE true
     ON CONFLICT(id) DO UPDATE SET status = excluded.status, attempts = webhook_deliveries.attempts + ?3,
       last_response_code = coalesce(excluded.last_response_code, webhook_deliveries.last_response_code), last_attempt_at = excluded.last_attempt_at,
       last_error = excluded.last_error
     WHERE webhook_deliveries.status = 'pending'`,
    JSON.stringify(rows),
    now,
    count ? 1 : 0,
  );
}

/** Deliveries dead-lettered (by the consumer or the platform): failed for good. */
export function deadLettered(sql: SqlStorage, messages: DeliveryMessage[], now: number) {
  writeReports(
    sql,
    messages.map((m) => ({ message: m, ok: false, status: null, error: 'Dead-lettered', final: true })),
    now,
    false,
  );
}

export function listDeliveries(sql: SqlStorage, hookId: string, limit: number): DeliveryView[] {
  return sql
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

/** Puts a logged delivery back in the outbox (same event id, same body); false when there is no such delivery. */
export function redeliver(sql: SqlStorage, hookId: string, id: string): boolean {
  const row = sql
    .exec<{ event_id: string; event: string; server_version: number | null }>(
      `UPDATE webhook_deliveries SET status = 'pending' WHERE id = ? AND hook_id = ? RETURNING event_id, event, server_version`,
      id,
      hookId,
    )
    .toArray()[0];
  if (!row) return false;
  addToOutbox(sql, [[row.event_id, row.server_version, row.event, [hookId]]]);
  return true;
}

/** Log entries and stored bodies past retention, a bounded number at a time. */
export function prune(sql: SqlStorage, cutoff: number) {
  sql.exec(`DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at < ? AND status != 'pending' LIMIT 5000)`, cutoff);
  sql.exec(`DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events WHERE created_at < ? LIMIT 5000)`, cutoff);
}
