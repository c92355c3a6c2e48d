/**
 * The Queue consumer (docs/webhooks.md "Delivery"): the Worker's `queue()` handler for the
 * webhook queue and its dead-letter queue. A message carries up to 25 deliveries of one object
 * (deliveries.ts `DeliveryBatch`: the object that holds them, each event and hook); the consumer
 * asks that object for the targets and the signed bodies' parts (one RPC per object per batch),
 * makes the attempts, reports them back (one more RPC), then acks, sends the failed ones on as
 * one retry message (OR3_WEBHOOK_RETRY_DELAYS_SECONDS, 30 s → 1 h by default), or dead-letters
 * the deliveries whose retries are used up. The dead-letter queue's consumer marks
 * those failed: a delivery ends failed whether this consumer or the platform dead-lettered it.
 *
 * Each attempt: POST, 10 s timeout (the body included), redirects not followed (a 3xx is a
 * failure), at most 4 KB of the answer read, and the target checked again (target.ts).
 */
import { loadConfig, type Config } from '../config';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import { batchOf, claimedTargets, deliveriesOf, type AttemptReport, type DeliveryBatch, type DeliveryMessage, type DeliveryTarget } from './deliveries';
import { signatureHeaders } from './signing';
import { targetProblem } from './target';

export const DELIVERY_TIMEOUT_MS = 10_000;
export const MAX_RESPONSE_BYTES = 4096;
/**
 * Attempts in flight per consumer invocation: a Worker holds at most 6 outgoing connections at
 * once and queues the rest, and an attempt's 10 s timeout must start when its request does, not
 * while it waits behind a batch of up to 100 (wrangler.toml `max_batch_size` 4 × 25 deliveries).
 */
export const ATTEMPTS_AT_ONCE = 6;

export type { DeliveryBatch, DeliveryMessage } from './deliveries';

type Outcome = Omit<AttemptReport, 'message' | 'final'>;

/** Reads at most `max` bytes of a response, then lets the rest go. */
async function drain(res: Response, max: number): Promise<void> {
  if (!res.body) return;
  const reader = res.body.getReader();
  let read = 0;
  try {
    while (read < max) {
      const { done, value } = await reader.read();
      if (done) return;
      read += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** One attempt at one delivery. */
export async function attempt(target: DeliveryTarget, config: Config, now = Date.now()): Promise<Outcome> {
  const problem = targetProblem(target.url, config.webhooks.allowLoopback);
  if (problem) return { ok: false, status: null, error: `Refused: ${problem}` };
  const headers = await signatureHeaders({ eventId: target.eventId, event: target.event, body: target.body, secrets: target.secrets, now });
  try {
    const res = await fetch(target.url, { method: 'POST', headers, body: target.body, redirect: 'manual', signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS) });
    await drain(res, MAX_RESPONSE_BYTES);
    if (res.status >= 300 && res.status < 400) return { ok: false, status: res.status, error: 'Redirects are not followed' };
    const ok = res.status >= 200 && res.status < 300;
    return { ok, status: res.status, error: ok ? null : `HTTP ${res.status}` };
  } catch (err) {
    const name = err instanceof Error ? err.name : '';
    const error = name === 'TimeoutError' || name === 'AbortError' ? `Timed out after ${DELIVERY_TIMEOUT_MS / 1000} s` : 'Could not connect';
    return { ok: false, status: null, error };
  }
}

/** Maps `items` through `work` with at most `limit` in flight; results in the items' order. */
async function inPool<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** A message body as a batch: the current shape, or a single delivery as sent before batches (still in a queue at deploy). */
function asBatch(body: unknown): DeliveryBatch | null {
  if (typeof body !== 'object' || body === null) return null;
  const b = body as Partial<DeliveryBatch> & Partial<DeliveryMessage>;
  if (typeof b.w !== 'string') return null;
  if (Array.isArray(b.d)) return { w: b.w, a: typeof b.a === 'number' ? b.a : 0, d: b.d };
  if (typeof b.e === 'string' && typeof b.h === 'string' && typeof b.n === 'string')
    return batchOf(b.w, 0, [{ w: b.w, e: b.e, h: b.h, n: b.n, v: b.v ?? null }]);
  return null;
}

/** The `queue()` handler for both webhook queues. */
export async function handleWebhookBatch(batch: MessageBatch<unknown>, env: Bindings): Promise<void> {
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    // Misconfigured: nothing can be delivered safely; try again once it is fixed.
    logEvent('error', 'webhook_misconfigured', { problems: loaded.problems.map((p) => p.variable) });
    batch.retryAll({ delaySeconds: 60 });
    return;
  }
  const deadLetters = batch.queue.endsWith('-dlq');
  // By object: one claim and one report per object per invocation.
  const groups = new Map<string, Received[]>();
  for (const message of batch.messages) {
    const body = asBatch(message.body);
    if (!body) {
      message.ack(); // not ours: nothing to deliver
      continue;
    }
    groups.set(body.w, [...(groups.get(body.w) ?? []), { message, body }]);
  }
  await Promise.all(
    [...groups].map(async ([objectName, received]) => {
      try {
        await (deadLetters ? markDeadLettered(env, objectName, received) : deliverGroup(env, loaded.config, objectName, received));
      } catch (err) {
        logEvent('error', 'webhook_batch_failed', { objectName, message: err instanceof Error ? err.message : String(err) });
        for (const { message } of received) message.retry({ delaySeconds: 30 });
      }
    }),
  );
}

type Received = { message: Message<unknown>; body: DeliveryBatch };

async function markDeadLettered(env: Bindings, objectName: string, received: Received[]) {
  await env.WORKSPACE.getByName(objectName).webhookDeadLettered(received.flatMap((r) => deliveriesOf(r.body)));
  for (const { message } of received) message.ack();
}

/**
 * Claims the deliveries of an object's messages, attempts them (at most ATTEMPTS_AT_ONCE in
 * flight), reports them, then acks each message; its failed deliveries go on together as one
 * message, delayed by the retry schedule, or to the dead-letter queue when their retries are used
 * up. A message's attempt number is the attempts its deliveries made before (`a`) plus the
 * platform's count (above 1 only when this consumer failed and the message was retried whole).
 */
async function deliverGroup(env: Bindings, config: Config, objectName: string, received: Received[]) {
  const stub = env.WORKSPACE.getByName(objectName);
  const items = received.flatMap((r, i) => deliveriesOf(r.body).map((delivery) => ({ delivery, from: i })));
  const targets = claimedTargets(await stub.webhookClaim(items.map((item) => item.delivery)));
  const delays = config.webhooks.retryDelaysSeconds;
  const attemptOf = (i: number) => received[i]!.body.a + received[i]!.message.attempts;
  const outcomes = await inPool(targets, ATTEMPTS_AT_ONCE, (t) => (t ? attempt(t, config) : Promise.resolve(null)));
  const reports: AttemptReport[] = [];
  const failed = received.map((): DeliveryMessage[] => []);
  outcomes.forEach((o, i) => {
    if (!o) return;
    const { delivery, from } = items[i]!;
    reports.push({ message: delivery, ...o, final: !o.ok && attemptOf(from) > delays.length });
    if (!o.ok) failed[from]!.push(delivery);
  });
  if (reports.length) await stub.webhookReport(reports);
  for (const [i, { message }] of received.entries()) {
    const n = attemptOf(i);
    if (failed[i]!.length) {
      const next = batchOf(objectName, n, failed[i]!);
      if (n <= delays.length) await env.WEBHOOK_QUEUE.send(next, { contentType: 'json', delaySeconds: delays[n - 1]! });
      else await env.WEBHOOK_DLQ.send(next, { contentType: 'json' });
    }
    message.ack();
  }
}
