/**
 * The service API over HTTP (docs/service-api.md):
 * - `/api/workspaces/:id/service-tokens`: owners (and deployment admins) create, list and revoke
 *   tokens; the token is in the create answer only;
 * - `/api/service/workspaces/:id/…` with `Authorization: Bearer <service token>`: the thread
 *   reader, one row, and the streaming put of one row;
 * - `servicePush`: `POST /api/sync/push` when its bearer is a service token (sync/routes.ts).
 * Each request is one RPC to the workspace's object, which checks the token (revocation holds at
 * once there), its scope and its rate limit; every use is audited with the token's id and name.
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { audit } from '../audit/emit';
import { requireUser, verifyCredential } from '../auth/authenticate';
import { fromFailure, unauthorized, type Failure } from '../errors';
import { jsonBody, queryParams } from '../http/body';
import { shardCaller, shardFailure } from '../workspaces/authorize';
import { param } from '../http/param';
import { scopeSchema, SYNC_LIMITS } from '../../protocol/rules';
import { READER_LIMITS, type MessagePage } from './reader';
import type { TokenReply, TokenRequest } from './serve';
import { serviceOpSchema } from './stamp';
import { hashSecret, isServiceToken, newToken, serviceCredential, type ServiceCredential } from './token';
import type { ServiceAccess } from './tokens';

/** Longest a token may live. */
export const MAX_TOKEN_SECONDS = 365 * 24 * 3600;
const NAME = /^[A-Za-z0-9._-]{1,64}$/;

const stub = (c: Context<AppEnv>, workspaceId: string) => c.env.WORKSPACE.getByName(workspaceId);

/** The bearer value when it is a service token, else null. */
export function serviceBearer(c: Context<AppEnv>): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '');
  return match && isServiceToken(match[1]!) ? match[1]! : null;
}

async function credentialOf(c: Context<AppEnv>): Promise<ServiceCredential> {
  const bearer = serviceBearer(c);
  const credential = bearer ? await serviceCredential(bearer) : null;
  if (!credential) throw unauthorized('A service token is required (Authorization: Bearer or3st_…)');
  return credential;
}

function used(c: Context<AppEnv>, workspaceId: string, token: ServiceAccess, route: string) {
  audit(c, 'service.token.used', { workspaceId, tokenId: token.tokenId, tokenName: token.name, route });
}

function answer<T extends { ok: boolean }>(reply: T): Exclude<T, { ok: false }> {
  if (!reply.ok) throw fromFailure(reply as unknown as Failure);
  return reply as Exclude<T, { ok: false }>;
}

/** A read's answer, typed by the request's kind (the RPC's union does not narrow by itself). */
function readReply<R>(reply: { ok: boolean }): R & { token: ServiceAccess } {
  if (!reply.ok) throw fromFailure(reply as unknown as Failure);
  return reply as unknown as R & { token: ServiceAccess };
}

/** Owners through the object; a deployment admin (not an owner) through the Worker's check. */
async function manage(c: Context<AppEnv>, workspaceId: string, request: TokenRequest): Promise<TokenReply> {
  const caller = await shardCaller(c, workspaceId, 'settings.manage');
  let reply = await stub(c, workspaceId).serviceTokens(caller, request);
  if (!reply.ok && reply.status === 403 && (await requireUser(c)).isAdmin) reply = await stub(c, workspaceId).serviceTokens(null, request);
  if (!reply.ok) shardFailure(c, caller, reply);
  return reply;
}

const createSchema = z.strictObject({
  name: z.string().regex(NAME, 'must be 1–64 letters, digits, dots, dashes or underscores'),
  scopes: z
    .array(z.enum(['read', 'write']))
    .min(1)
    .max(2)
    .transform((s) => [...new Set(s)]),
  expiresInSeconds: z.number().int().min(1).max(MAX_TOKEN_SECONDS),
});

export const serviceTokenRoutes = new Hono<AppEnv>()
  .get('/', async (c) => {
    const reply = await manage(c, param(c.req.param('id'), 'workspace id'), { op: 'list' });
    return c.json({ serviceTokens: (reply as Extract<TokenReply, { serviceTokens: unknown }>).serviceTokens });
  })
  .post('/', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const body = await jsonBody(c, createSchema);
    const credential = await verifyCredential(c);
    const createdBy = !credential ? 'unknown' : credential.kind === 'federated' ? `${credential.provider}:${credential.subject}` : credential.userId;
    const { tokenId, token, secret } = newToken();
    const request = {
      op: 'create' as const,
      tokenId,
      secretHash: await hashSecret(secret),
      name: body.name,
      scopes: body.scopes,
      expiresAt: Date.now() + body.expiresInSeconds * 1000,
      createdBy,
    };
    const reply = (await manage(c, workspaceId, request)) as Extract<TokenReply, { serviceToken: unknown }>;
    audit(c, 'service.token.created', { workspaceId, actorId: createdBy, tokenId, tokenName: body.name, scopes: body.scopes.join(',') });
    return c.json({ token, serviceToken: reply.serviceToken });
  })
  .delete('/:tokenId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const tokenId = param(c.req.param('tokenId'), 'token id');
    await manage(c, workspaceId, { op: 'revoke', id: tokenId });
    audit(c, 'service.token.revoked', {
      workspaceId,
      actorId: (await verifyCredential(c))?.kind === 'session' ? (await requireUser(c)).userId : null,
      tokenId,
    });
    return c.json({ ok: true });
  });

const messagesQuery = z.strictObject({
  after: z.string().min(1).max(4096).optional(),
  limit: z.coerce.number().int().min(1).max(READER_LIMITS.maxLimit).default(READER_LIMITS.defaultLimit),
});

/** The streaming put: one row's payload, committed at once, poked at a bounded rate until `final`. */
const putSchema = z.strictObject({
  payload: z.record(z.string(), z.unknown()),
  final: z.boolean().optional(),
  stamp: serviceOpSchema.shape.stamp,
});

export const serviceApi = new Hono<AppEnv>()
  .get('/workspaces/:id/threads/:threadId/messages', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const credential = await credentialOf(c);
    const query = queryParams(c, messagesQuery);
    const request = { kind: 'messages' as const, threadId: param(c.req.param('threadId'), 'thread id'), after: query.after ?? null, limit: query.limit };
    const page = readReply<MessagePage>(await stub(c, workspaceId).serviceRead(credential, request));
    used(c, workspaceId, page.token, 'GET messages');
    return c.json({ messages: page.messages, next: page.next });
  })
  .get('/workspaces/:id/rows/:table/:pk', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const credential = await credentialOf(c);
    const request = { kind: 'row' as const, table: param(c.req.param('table'), 'table'), pk: param(c.req.param('pk'), 'key') };
    const found = readReply<{ row: Record<string, unknown>; serverVersion: number }>(await stub(c, workspaceId).serviceRead(credential, request));
    used(c, workspaceId, found.token, 'GET row');
    return c.json({ row: found.row, serverVersion: found.serverVersion });
  })
  .put('/workspaces/:id/rows/:table/:pk', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const credential = await credentialOf(c);
    const body = await jsonBody(c, putSchema, { maxBytes: SYNC_LIMITS.maxPayloadBytes + 4096 });
    const op = {
      tableName: param(c.req.param('table'), 'table'),
      operation: 'put' as const,
      pk: param(c.req.param('pk'), 'key'),
      payload: body.payload,
      ...(body.stamp ? { stamp: body.stamp } : {}),
    };
    const reply = answer(await stub(c, workspaceId).servicePush(credential, workspaceId, [op], { stream: body.final !== true }));
    used(c, workspaceId, reply.token, 'PUT row');
    return c.json({ result: reply.results[0], serverVersion: reply.serverVersion });
  });

const servicePushSchema = z.strictObject({
  scope: scopeSchema,
  ops: z.array(serviceOpSchema).max(SYNC_LIMITS.maxOps, `at most ${SYNC_LIMITS.maxOps} ops per push`),
});

/** `POST /api/sync/push` with a service token: the same engine and answer as a device's push. */
export async function servicePush(c: Context<AppEnv>) {
  const credential = await credentialOf(c);
  const body = await jsonBody(c, servicePushSchema);
  const workspaceId = body.scope.workspaceId;
  const reply = answer(await stub(c, workspaceId).servicePush(credential, workspaceId, body.ops, { stream: false }));
  used(c, workspaceId, reply.token, 'POST /api/sync/push');
  return c.json({ results: reply.results, serverVersion: reply.serverVersion });
}
