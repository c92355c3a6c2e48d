/**
 * Webhook management inside the object that holds the hooks (one RPC per request): the routes
 * validate, the object authorizes and calls `manageWebhooks`. Returns plain values or a
 * `Failure` (thrown errors lose their type over RPC).
 */
import type { Failure } from '../errors';
import { PING_EVENT } from './events';
import type { DeliveryView, HookView, WebhookRegistry } from './registry';

export type WebhookRequest =
  | { op: 'list' }
  | { op: 'get'; id: string }
  | { op: 'create'; url: string; events: string[]; enabled: boolean; createdBy: string }
  | { op: 'update'; id: string; patch: { url?: string; events?: string[]; enabled?: boolean } }
  | { op: 'delete'; id: string }
  | { op: 'rotate'; id: string; graceMs: number }
  | { op: 'test'; id: string }
  | { op: 'deliveries'; id: string; limit: number }
  | { op: 'redeliver'; id: string; deliveryId: string };

export type WebhookReply =
  | { ok: true; webhooks: HookView[] }
  | { ok: true; webhook: HookView; secret?: string }
  | { ok: true; deliveries: DeliveryView[] }
  | { ok: true; eventId: string; deliveryId: string }
  | { ok: true };

const noHook: Failure = { ok: false, status: 404, code: 'webhook_not_found', message: 'No such webhook' };

/** The reply, and whether deliveries now wait for the Queue. */
export function manageWebhooks(registry: WebhookRegistry, request: WebhookRequest, now: number): { reply: WebhookReply | Failure; flush: boolean } {
  const done = (reply: WebhookReply | Failure, flush = false) => ({ reply, flush });
  switch (request.op) {
    case 'list':
      return done({ ok: true, webhooks: registry.hooks().map((h) => registry.view(h, now)) });
    case 'get': {
      const hook = registry.hook(request.id);
      return done(hook ? { ok: true, webhook: registry.view(hook, now) } : noHook);
    }
    case 'create': {
      const created = registry.create(request, now);
      if (!created) return done({ ok: false, status: 409, code: 'too_many_webhooks', message: 'This workspace has as many webhooks as it may have (20)' });
      return done({ ok: true, webhook: created.hook, secret: created.secret });
    }
    case 'update': {
      const hook = registry.update(request.id, request.patch, now);
      return done(hook ? { ok: true, webhook: hook } : noHook);
    }
    case 'delete':
      return done(registry.remove(request.id) ? { ok: true } : noHook);
    case 'rotate': {
      const rotated = registry.rotate(request.id, request.graceMs, now);
      return done(rotated ? { ok: true, webhook: rotated.hook, secret: rotated.secret } : noHook);
    }
    case 'test': {
      if (!registry.hook(request.id)) return done(noHook);
      const body = (eventId: string) =>
        JSON.stringify({
          event: PING_EVENT,
          event_id: eventId,
          timestamp: new Date(now).toISOString(),
          webhook_id: request.id,
          data: { message: 'A test delivery' },
        });
      const { eventId, deliveryIds } = registry.emit(PING_EVENT, body, now, request.id);
      return done({ ok: true, eventId, deliveryId: deliveryIds[0]! }, true);
    }
    case 'deliveries':
      return done(registry.hook(request.id) ? { ok: true, deliveries: registry.deliveries(request.id, request.limit) } : noHook);
    case 'redeliver': {
      if (!registry.hook(request.id)) return done(noHook);
      if (!registry.redeliver(request.id, request.deliveryId)) {
        return done({ ok: false, status: 404, code: 'delivery_not_found', message: 'No such delivery (or its event is past the log retention)' });
      }
      return done({ ok: true }, true);
    }
  }
}
