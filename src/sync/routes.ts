/**
 * `/api/sync/*` (docs/sync.md): verify the caller's credential (no D1), validate (and, for our
 * own tokens, prepare the batch) in the Worker, then make exactly one RPC to the workspace's
 * Durable Object, which takes the caller and authorizes it from its own cache (authorization at
 * the shard, src/workspace-db/access.ts). A federated token's push is prepared by the object,
 * which alone knows its user (notifications are forced to it).
 *
 * Realtime: `GET /api/sync/ws?workspaceId=` upgrades to a WebSocket on the object. Browsers on
 * an allowed origin authenticate with their cookie; other clients send a bearer header, or, where
 * a WebSocket API cannot set headers, a single-use ticket (ws-ticket.ts) in `?ticket=`.
 */
import { Hono, type Context } from 'hono';
import type { AppEnv } from '../env';
import { isAllowedOrigin } from '../http/cors';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, forbidden, unauthorized, type Failure } from '../errors';
import { authorizeAtShard, shardCaller, shardFailure } from '../workspaces/authorize';
import type { Permission } from '../workspace-records/permissions';
import type { SyncCaller } from '../workspace-contract';
import type { SyncLimitName } from '../limiter';
import { SYNC_LIMITS, cursorSchema, gcSchema, prepareBatch, pullSchema, pushSchema, snapshotSchema, wsTicketSchema } from '../../protocol/rules';
import { issueTicket, readTicket } from './ws-ticket';
import { declared, missingFlags } from '../../protocol/capabilities';
import { DEVICE_ID_PATTERN } from '../../protocol/sync';
import { audit } from '../audit/emit';

/** The request as the object authorizes it, and the rate limit it counts against (the object knows how many per minute). */
async function caller(c: Context<AppEnv>, workspaceId: string, permission: Permission, limit: SyncLimitName): Promise<SyncCaller> {
  return { ...(await shardCaller(c, workspaceId, permission)), limit };
}

/** The object's answer, or its refusal as the HTTP error (denials logged and audited). */
function answer<R extends { ok: true } | Failure>(c: Context<AppEnv>, call: SyncCaller, reply: R): Exclude<R, Failure> {
  if (!reply.ok) shardFailure(c, call, reply as Failure);
  return reply as Exclude<R, Failure>;
}

const stub = (c: Context<AppEnv>, workspaceId: string) => c.env.WORKSPACE.getByName(workspaceId);

/** Both GC routes: owner only (settings.manage), one RPC, `{ deletedCount }`. */
async function runGc(c: Context<AppEnv>, kind: 'tombstones' | 'change-log') {
  const body = await jsonBody(c, gcSchema);
  const call = await caller(c, body.scope.workspaceId, 'settings.manage', 'gc');
  const result = answer(c, call, await stub(c, body.scope.workspaceId).gc(call, { kind, retentionSeconds: body.retentionSeconds }));
  audit(c, 'sync.gc.run', {
    actorId: result.userId,
    workspaceId: body.scope.workspaceId,
    kind,
    retentionSeconds: body.retentionSeconds,
    deleted: result.deletedCount,
  });
  return c.json({ deletedCount: result.deletedCount });
}

export const sync = new Hono<AppEnv>()
  .post('/push', async (c) => {
    const body = await jsonBody(c, pushSchema);
    const workspaceId = body.scope.workspaceId;
    const call = await caller(c, workspaceId, 'write', 'push');
    const missing = missingFlags(declared(body));
    // Notifications are forced to their pusher: our tokens name the user, so the Worker prepares
    // the batch; a federated token's user is resolved by the object, which then prepares it. One RPC either way.
    const ws = stub(c, workspaceId);
    const result = answer(
      c,
      call,
      call.credential.kind === 'session'
        ? await ws.push(call, await prepareBatch(body.ops, workspaceId, call.credential.userId), missing)
        : await ws.pushUnprepared(call, body.ops, missing),
    );
    return c.json({ results: result.results, serverVersion: result.serverVersion });
  })

  .post('/pull', async (c) => {
    const body = await jsonBody(c, pullSchema);
    const call = await caller(c, body.scope.workspaceId, 'read', 'pull');
    const input = {
      cursor: body.cursor,
      limit: body.limit ?? SYNC_LIMITS.pullDefault,
      missing: missingFlags(declared(body)),
      ...(body.tables ? { tables: body.tables } : {}),
    };
    const r = answer(c, call, await stub(c, body.scope.workspaceId).pull(call, input));
    // The changes arrive as JSON text from the object; the envelope is spliced around them.
    const tail = JSON.stringify({
      nextCursor: r.nextCursor,
      hasMore: r.hasMore,
      oldestRetainedVersion: r.oldestRetainedVersion,
      requiresSnapshot: r.requiresSnapshot,
    });
    return c.body(`{"changes":${r.changesJson},${tail.slice(1)}`, 200, { 'content-type': 'application/json' });
  })

  .post('/update-cursor', async (c) => {
    const body = await jsonBody(c, cursorSchema);
    const call = await caller(c, body.scope.workspaceId, 'read', 'updateCursor');
    answer(c, call, await stub(c, body.scope.workspaceId).updateCursor(call, { deviceId: body.deviceId, version: body.version }));
    return c.json({ ok: true });
  })

  .post('/snapshot', async (c) => {
    const body = await jsonBody(c, snapshotSchema);
    const call = await caller(c, body.scope.workspaceId, 'read', 'pull');
    const input = {
      pageSize: body.pageSize ?? SYNC_LIMITS.snapshotDefault,
      missing: missingFlags(declared(body)),
      ...(body.pageToken ? { pageToken: body.pageToken } : {}),
      ...(body.tables ? { tables: body.tables } : {}),
    };
    const r = answer(c, call, await stub(c, body.scope.workspaceId).snapshot(call, input));
    // As with pull, the items arrive as JSON text and are spliced into the envelope.
    const head = JSON.stringify({ workspaceId: body.scope.workspaceId, snapshotId: r.snapshotId, highWatermark: r.highWatermark });
    return c.body(`${head.slice(0, -1)},"items":${r.itemsJson},"nextPageToken":${JSON.stringify(r.nextPageToken)}}`, 200, {
      'content-type': 'application/json',
    });
  })

  .post('/gc-tombstones', (c) => runGc(c, 'tombstones'))
  .post('/gc-change-log', (c) => runGc(c, 'change-log'))

  .post('/ws-ticket', async (c) => {
    const body = await jsonBody(c, wsTicketSchema);
    const access = await authorizeAtShard(c, body.workspaceId, 'read');
    const { ticket, expiresAt } = await issueTicket(c.get('config').auth.jwtSecret, access.userId, body.workspaceId, access.sessionId);
    return c.json({ ticket, expiresAt: new Date(expiresAt).toISOString() });
  })

  .get('/ws', async (c) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') throw new ApiError(426, 'upgrade_required', 'This endpoint needs a WebSocket upgrade');
    const workspaceId = c.req.query('workspaceId');
    if (!workspaceId || workspaceId.length > 256) throw badRequest('workspaceId is required', 'invalid_query');
    // Presence names the socket's device with it (docs/sync.md "Presence"); echoed to every member.
    const deviceId = c.req.query('deviceId');
    if (deviceId !== undefined && !DEVICE_ID_PATTERN.test(deviceId)) throw badRequest('deviceId must be 1–128 letters, digits, or . _ : -', 'invalid_query');
    const forward = new Headers(c.req.raw.headers);
    // The object trusts x-or3-* headers from the Worker: never pass a client's through.
    for (const name of [...forward.keys()]) if (name.startsWith('x-or3-')) forward.delete(name);
    const ticket = c.req.query('ticket');
    let call;
    if (ticket) {
      const read = await readTicket(c.get('config').auth.jwtSecret, ticket, workspaceId);
      if (!read) throw unauthorized('The ticket is invalid or expired');
      // The object checks that the membership and the ticket's session still hold, and claims the nonce.
      const credential = { kind: 'ticket' as const, userId: read.userId, sessionId: read.sessionId, expiresAt: read.expiresAt };
      call = { workspaceId, credential, permission: 'read' as const };
      forward.set('x-or3-ticket-nonce', read.nonce);
    } else {
      // Browsers send cookies on cross-site WebSocket handshakes: check the origin like CSRF does.
      const origin = c.req.header('origin');
      if (origin && origin !== new URL(c.req.url).origin && !isAllowedOrigin(c.get('config'), origin)) {
        throw forbidden(`WebSocket from ${origin} refused`, 'csrf_rejected');
      }
      call = await shardCaller(c, workspaceId, 'read'); // 401 without credentials; the object answers 403 for non-members
    }
    // Sync over the socket (docs/sync.md): it counts against the same rate limits and quota as
    // HTTP, which the object reads from its own configuration.
    forward.set('x-or3-caller', JSON.stringify({ ...call, sync: true }));
    if (deviceId) forward.set('x-or3-device-id', deviceId);
    return stub(c, workspaceId).fetch(new Request(c.req.url, { headers: forward }));
  });
