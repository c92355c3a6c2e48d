/**
 * Webhook management over HTTP (docs/webhooks.md "Managing webhooks"): a workspace's owners at
 * `/api/workspaces/:id/webhooks`, deployment admins at `/api/admin/webhooks` (deployment
 * events). The same routes for both; each request is validated here and answered by one RPC to
 * the object that holds the hooks, which authorizes a workspace's caller itself (settings.manage,
 * from its cache: no D1 query).
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { badRequest, fromFailure } from '../errors';
import { jsonBody, queryParams } from '../http/body';
import { requireAdmin } from '../admin/routes';
import { verifyCredential } from '../auth/authenticate';
import { shardCaller, shardFailure } from '../workspaces/authorize';
import { param } from '../http/param';
import { DEPLOYMENT_EVENTS, WORKSPACE_EVENTS } from './events';
import type { WebhookReply, WebhookRequest } from './manage';
import { DEPLOYMENT_OBJECT } from './registry';
import { targetProblem } from './target';
import { deploymentHooksChanged } from '../events/deployment';
import { audit } from '../audit/emit';
import type { Failure } from '../errors';

type Scope = 'workspace' | 'deployment';

/** How long a rotated-out secret still signs, by default and at most. */
export const ROTATION_GRACE = { defaultSeconds: 24 * 3600, maxSeconds: 7 * 24 * 3600 } as const;

const catalogue = (scope: Scope): readonly string[] => (scope === 'workspace' ? WORKSPACE_EVENTS : DEPLOYMENT_EVENTS);

/** An event filter entry: a known event, "*", or "<noun>.*" for a known noun. */
const eventsSchema = (scope: Scope) =>
  z
    .array(z.string().max(64))
    .min(1)
    .max(50)
    .superRefine((events, ctx) => {
      const known = catalogue(scope);
      for (const [i, e] of events.entries()) {
        const ok = e === '*' || known.includes(e) || (e.endsWith('.*') && known.some((k) => k.startsWith(e.slice(0, -1))));
        if (!ok) ctx.addIssue({ code: 'custom', path: [i], message: `unknown event "${e}"; known: ${known.join(', ')}` });
      }
    })
    .transform((events) => [...new Set(events)]);

const url = z.string().max(2048);

/** The object holding the hooks, and who is asking (null: the Worker checked a deployment admin). */
async function target(c: Context<AppEnv>, scope: Scope) {
  if (scope === 'deployment') return { objectName: DEPLOYMENT_OBJECT, caller: null };
  const workspaceId = param(c.req.param('id'), 'workspace id');
  return { objectName: workspaceId, caller: await shardCaller(c, workspaceId, 'settings.manage') };
}

async function call<R extends WebhookReply>(c: Context<AppEnv>, scope: Scope, request: WebhookRequest): Promise<R> {
  const { objectName, caller } = await target(c, scope);
  if (scope === 'deployment' && ['create', 'update', 'delete'].includes(request.op)) deploymentHooksChanged();
  const reply = await c.env.WORKSPACE.getByName(objectName).webhooks(caller, request);
  if (!reply.ok) {
    if (caller) shardFailure(c, caller, reply as Failure);
    throw fromFailure(reply as Failure); // the deployment's hooks: 404, 409 as they are
  }
  return reply as R;
}

function checkUrl(c: Context<AppEnv>, value: string) {
  const problem = targetProblem(value, c.get('config').webhooks.allowLoopback);
  if (problem) throw badRequest(`Invalid webhook url: ${problem}`, 'invalid_url');
  return value;
}

function actorOf(c: Context<AppEnv>, scope: Scope) {
  return scope === 'workspace' ? { workspaceId: c.req.param('id') } : { scope: 'deployment' };
}

export function webhookRoutes(scope: Scope) {
  const app = new Hono<AppEnv>();
  if (scope === 'deployment') app.use('*', requireAdmin);
  const hookId = (c: Context<AppEnv>) => param(c.req.param('hookId'), 'webhook id');
  return app
    .get('/', async (c) => c.json({ webhooks: (await call<Extract<WebhookReply, { webhooks: unknown }>>(c, scope, { op: 'list' })).webhooks }))
    .post('/', async (c) => {
      const body = await jsonBody(c, z.strictObject({ url, events: eventsSchema(scope), enabled: z.boolean().optional() }));
      const credential = await verifyCredential(c);
      const createdBy = !credential ? 'unknown' : credential.kind === 'federated' ? `${credential.provider}:${credential.subject}` : credential.userId;
      const reply = await call<Extract<WebhookReply, { webhook: unknown }>>(c, scope, {
        op: 'create',
        url: checkUrl(c, body.url),
        events: body.events,
        enabled: body.enabled ?? true,
        createdBy,
      });
      audit(c, 'webhook.created', { ...actorOf(c, scope), hookId: reply.webhook.id, url: reply.webhook.url });
      return c.json({ webhook: reply.webhook, secret: reply.secret });
    })
    .get('/:hookId', async (c) =>
      c.json({ webhook: (await call<Extract<WebhookReply, { webhook: unknown }>>(c, scope, { op: 'get', id: hookId(c) })).webhook }),
    )
    .patch('/:hookId', async (c) => {
      const body = await jsonBody(c, z.strictObject({ url: url.optional(), events: eventsSchema(scope).optional(), enabled: z.boolean().optional() }));
      if (body.url !== undefined) checkUrl(c, body.url);
      const reply = await call<Extract<WebhookReply, { webhook: unknown }>>(c, scope, { op: 'update', id: hookId(c), patch: body });
      return c.json({ webhook: reply.webhook });
    })
    .delete('/:hookId', async (c) => {
      await call(c, scope, { op: 'delete', id: hookId(c) });
      audit(c, 'webhook.deleted', { ...actorOf(c, scope), hookId: hookId(c) });
      return c.json({ ok: true });
    })
    .post('/:hookId/rotate', async (c) => {
      const body = await jsonBody(c, z.strictObject({ graceSeconds: z.number().int().min(0).max(ROTATION_GRACE.maxSeconds).optional() }), { allowEmpty: true });
      const graceMs = (body?.graceSeconds ?? ROTATION_GRACE.defaultSeconds) * 1000;
      const reply = await call<Extract<WebhookReply, { webhook: unknown }>>(c, scope, { op: 'rotate', id: hookId(c), graceMs });
      audit(c, 'webhook.secret_rotated', { ...actorOf(c, scope), hookId: reply.webhook.id });
      return c.json({ webhook: reply.webhook, secret: reply.secret });
    })
    .post('/:hookId/test', async (c) => {
      const reply = await call<Extract<WebhookReply, { eventId: string }>>(c, scope, { op: 'test', id: hookId(c) });
      return c.json({ ok: true, eventId: reply.eventId, deliveryId: reply.deliveryId });
    })
    .get('/:hookId/deliveries', async (c) => {
      const query = queryParams(c, z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(50) }));
      const reply = await call<Extract<WebhookReply, { deliveries: unknown }>>(c, scope, { op: 'deliveries', id: hookId(c), limit: query.limit });
      return c.json({ deliveries: reply.deliveries });
    })
    .post('/:hookId/deliveries/:deliveryId/redeliver', async (c) => {
      await call(c, scope, { op: 'redeliver', id: hookId(c), deliveryId: param(c.req.param('deliveryId'), 'delivery id') });
      return c.json({ ok: true });
    });
}
