/**
 * The Queue consumer (docs/webhooks.md "Delivery"): the Worker's `queue()` handler for the
 * webhook queue and its dead-letter queue. A message names a delivery (deliveries.ts
 * `DeliveryMessage`: the object that holds it, the event, the hook); the consumer asks that object for the target and the signed body's
 * parts (one RPC per object per batch), makes the attempts, reports them back (one more RPC),
 * then acks, schedules the retry (OR3_WEBHOOK_RETRY_DELAYS_SECONDS, 30 s → 1 h by default), or
 * dead-letters a delivery whose retries are used up. The dead-letter queue's consumer marks
 * those failed: a delivery ends failed whether this consumer or the platform dead-lettered it.
 *
 * Each attempt: POST, 10 s timeout (the body included), redirects not followed (a 3xx is a
 * failure), at most 4 KB of the answer read, and the target checked again (target.ts).
 */
import { loadConfig, type Config } from '../config';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import type { AttemptReport, DeliveryMessage, DeliveryTarget } from './deliveries';
import { signatureHeaders } from './signing';
import { targetProblem } from './target';

export const DELIVERY_TIMEOUT_MS = 10_000;
export const MAX_RESPONSE_BYTES = 4096;
/**
 * Attempts in flight per consumer invocation: a Worker holds at most 6 outgoing connections at
 * once and queues the rest, and an attempt's 10 s timeout must start when its request does, not
 * while it waits behind a batch of up to 100 (wrangler.toml `max_batch_size`).
 */
export const ATTEMPTS_AT_ONCE = 6;

export type { DeliveryMessage } from './deliveries';

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

/** The `queue()` handler for both webhook queues. */
export async function handleWebhookBatch(batch: MessageBatch<DeliveryMessage>, env: Bindings): Promise<void> {
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    // Misconfigured: nothing can be delivered safely; try again once it is fixed.
    logEvent('error', 'webhook_misconfigured', { problems: loaded.problems.map((p) => p.variable) });
    batch.retryAll({ delaySeconds: 60 });
    return;
  }
  const deadLetters = batch.queue.endsWith('-dlq');
  const groups = new Map<string, Message<DeliveryMessage>[]>();
  for (const message of batch.messages) {
    const body = message.body;
    if (!body || typeof body.w !== 'string' || typeof body.e !== 'string' || typeof body.h !== 'string' || typeof body.n !== 'string') {
      message.ack(); // not ours: nothing to deliver
      continue;
    }
    groups.set(body.w, [...(groups.get(body.w) ?? []), message]);
  }
  await Promise.all(
    [...groups].map(async ([objectName, messages]) => {
      try {
        await (deadLetters ? markDeadLettered(env, objectName, messages) : deliverGroup(env, loaded.config, objectName, messages));
      } catch (err) {
        logEvent('error', 'webhook_batch_failed', { objectName, message: err instanceof Error ? err.message : String(err) });
        for (const m of messages) m.retry({ delaySeconds: 30 });
      }
    }),
  );
}

async function markDeadLettered(env: Bindings, objectName: string, messages: Message<DeliveryMessage>[]) {
  await env.WORKSPACE.getByName(objectName).webhookDeadLettered(messages.map((m) => m.body));
  for (const m of messages) m.ack();
}

async function deliverGroup(env: Bindings, config: Config, objectName: string, messages: Message<DeliveryMessage>[]) {
  const stub = env.WORKSPACE.getByName(objectName);
  const targets = await stub.webhookClaim(messages.map((m) => m.body));
  const delays = config.webhooks.retryDelaysSeconds;
  const outcomes = await inPool(targets, ATTEMPTS_AT_ONCE, (t) => (t ? attempt(t, config) : Promise.resolve(null)));
  const reports: AttemptReport[] = [];
  outcomes.forEach((o, i) => {
    if (o) reports.push({ message: messages[i]!.body, ...o, final: !o.ok && messages[i]!.attempts > delays.length });
  });
  if (reports.length) await stub.webhookReport(reports);
  for (const [i, m] of messages.entries()) {
    const o = outcomes[i];
    if (!o || o.ok) m.ack();
    else if (m.attempts <= delays.length) m.retry({ delaySeconds: delays[m.attempts - 1]! });
    else {
      await env.WEBHOOK_DLQ.send(m.body, { contentType: 'json' });
      m.ack();
    }
  }
}
