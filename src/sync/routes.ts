/**
 * `/api/sync/*` (docs/sync.md): authenticate, check membership and permission for the scope's
 * workspace (one D1 read), validate and prepare in the Worker, then make exactly one RPC to the
 * workspace's Durable Object.
 *
 * Realtime: `GET /api/sync/ws?workspaceId=` upgrades to a WebSocket on the object. Browsers on
 * an allowed origin authenticate with their cookie; other clients send a bearer header, or, where
 * a WebSocket API cannot set headers, a single-use ticket (ws-ticket.ts) in `?ticket=`.
 */
import { Hono, type Context } from 'hono';
import type { AppEnv } from '../env';
import { sessionIsLive } from '../auth/store';
import { isAllowedOrigin } from '../http/cors';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, forbidden, fromFailure, unauthorized } from '../errors';
import { authorizeWorkspace } from '../workspaces/authorize';
import { membershipOf } from '../workspaces/store';
import { DEFAULT_SYNC_LIMITS, type Caller, type SyncLimitName } from './limiter';
import { SYNC_LIMITS, cursorSchema, gcSchema, prepareBatch, pullSchema, pushSchema, snapshotSchema, wsTicketSchema } from './protocol';
import { issueTicket, readTicket } from './ws-ticket';
import { DEVICE_ID_PATTERN } from '../../client/src/contract';
import { audit } from '../audit/emit';

function caller(c: Context<AppEnv>, workspaceId: string, userId: string, name: SyncLimitName): Caller {
  const perMinute = c.get('config').rateLimitOverrides[name] ?? DEFAULT_SYNC_LIMITS[name];
  return { workspaceId, userId, limit: { name, perMinute } };
}

const stub = (c: Context<AppEnv>, workspaceId: string) => c.env.WORKSPACE.getByName(workspaceId);

/** Both GC routes: owner only (settings.manage), one RPC, `{ deletedCount }`. */
async function runGc(c: Context<AppEnv>, kind: 'tombstones' | 'change-log') {
  const body = await jsonBody(c, gcSchema);
  const { principal } = await authorizeWorkspace(c, body.scope.workspaceId, 'settings.manage');
  const result = await stub(c, body.scope.workspaceId).gc(caller(c, body.scope.workspaceId, principal.userId, 'gc'), {
    kind,
    retentionSeconds: body.retentionSeconds,
  });
  if (!result.ok) throw fromFailure(result);
  audit(c, 'sync.gc.run', {
    actorId: principal.userId,
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
    const { principal } = await authorizeWorkspace(c, body.scope.workspaceId, 'write');
    const ops = await prepareBatch(body.ops, body.scope.workspaceId, principal.userId);
    const result = await stub(c, body.scope.workspaceId).push(
      caller(c, body.scope.workspaceId, principal.userId, 'push'),
      ops,
      c.get('config').sync.workspaceQuotaBytes,
    );
    if (!result.ok) throw fromFailure(result);
    return c.json({ results: result.results, serverVersion: result.serverVersion });
  })

  .post('/pull', async (c) => {
    const body = await jsonBody(c, pullSchema);
    const { principal } = await authorizeWorkspace(c, body.scope.workspaceId, 'read');
    const input = { cursor: body.cursor, limit: body.limit ?? SYNC_LIMITS.pullDefault, ...(body.tables ? { tables: body.tables } : {}) };
    const r = await stub(c, body.scope.workspaceId).pull(caller(c, body.scope.workspaceId, principal.userId, 'pull'), input);
    if (!r.ok) throw fromFailure(r);
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
    const { principal } = await authorizeWorkspace(c, body.scope.workspaceId, 'read');
    const r = await stub(c, body.scope.workspaceId).updateCursor(caller(c, body.scope.workspaceId, principal.userId, 'updateCursor'), {
      deviceId: body.deviceId,
      version: body.version,
    });
    if (!r.ok) throw fromFailure(r);
    return c.json({ ok: true });
  })

  .post('/snapshot', async (c) => {
    const body = await jsonBody(c, snapshotSchema);
    const { principal } = await authorizeWorkspace(c, body.scope.workspaceId, 'read');
    const input = {
      pageSize: body.pageSize ?? SYNC_LIMITS.snapshotDefault,
      ...(body.pageToken ? { pageToken: body.pageToken } : {}),
      ...(body.tables ? { tables: body.tables } : {}),
    };
    const r = await stub(c, body.scope.workspaceId).snapshot(caller(c, body.scope.workspaceId, principal.userId, 'pull'), input);
    if (!r.ok) throw fromFailure(r);
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
    const { principal } = await authorizeWorkspace(c, body.workspaceId, 'read');
    const { ticket, expiresAt } = await issueTicket(c.get('config').auth.jwtSecret, principal.userId, body.workspaceId, principal.sessionId);
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
    let userId: string;
    let sessionId: string | null;
    if (ticket) {
      const read = await readTicket(c.get('config').auth.jwtSecret, ticket, workspaceId);
      if (!read) throw unauthorized('The ticket is invalid or expired');
      // Membership may have changed since the ticket was issued.
      if (!(await membershipOf(c.env.DB, workspaceId, read.userId))) throw forbidden('You are not a member of this workspace', 'not_member');
      // So may the session (signed out since): a ticket does not outlive it.
      if (read.sessionId && !(await sessionIsLive(c.env.DB, read.sessionId))) {
        throw unauthorized('The session of this ticket has ended');
      }
      userId = read.userId;
      sessionId = read.sessionId;
      forward.set('x-or3-ticket-nonce', read.nonce);
      forward.set('x-or3-ticket-expires', String(read.expiresAt));
    } else {
      // Browsers send cookies on cross-site WebSocket handshakes: check the origin like CSRF does.
      const origin = c.req.header('origin');
      if (origin && origin !== new URL(c.req.url).origin && !isAllowedOrigin(c.get('config'), origin)) {
        throw forbidden(`WebSocket from ${origin} refused`, 'csrf_rejected');
      }
      // 401 without credentials, 403 for non-members; one D1 read for both checks.
      const { principal } = await authorizeWorkspace(c, workspaceId, 'read');
      userId = principal.userId;
      sessionId = principal.sessionId;
    }
    forward.set('x-or3-user-id', userId);
    if (sessionId) forward.set('x-or3-session-id', sessionId);
    if (deviceId) forward.set('x-or3-device-id', deviceId);
    return stub(c, workspaceId).fetch(new Request(c.req.url, { headers: forward }));
  });
