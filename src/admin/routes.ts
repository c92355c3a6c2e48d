/**
 * `/api/admin/*`: deployment administration. Only deployment admins (a user flag, not a
 * workspace role) get in; every mutation also needs `x-or3-admin-intent: admin`, so a stray
 * cross-site or scripted request cannot trigger one by accident, and each is audited.
 */
import { Hono, type Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { archiveAdmin } from '../archive/admin';
import { auditAdmin } from '../audit/routes';
import { accountAdmin } from '../accounts/routes';
import { metricsAdmin } from './metrics';
import { requireUser } from '../auth/authenticate';
import type { AppEnv } from '../env';
import { jsonBody, queryParams } from '../http/body';
import { PLATFORM } from '../limits';
import { ApiError, badRequest, conflict, forbidden, notFound } from '../errors';
import { logEvent } from '../http/logger';
import { ROLES } from '../workspaces/permissions';
import { param } from '../http/param';
import { memberChangeResult } from '../workspaces/member-change';
import { forgetAccess } from '../workspaces/invalidate';
import { createWorkspace, discardWorkspace, removeMember, setWorkspaceDeleted, upsertMember, workspaceExists, workspaceName } from '../workspaces/store';
import { readHistory, type ExportSource } from '../archive/export';
import type { ArchivedEntry } from '../archive/archive';
import { grantAdmin, likePattern, listAllWorkspaces, listUsers, revokeAdmin } from './store';

export const requireAdmin = createMiddleware<AppEnv>(async (c, next) => {
  const principal = await requireUser(c);
  if (!principal.isAdmin) throw forbidden('Deployment admin access required', 'admin_required');
  if (!['GET', 'HEAD'].includes(c.req.method) && c.req.header('x-or3-admin-intent') !== 'admin') {
    throw forbidden('Admin mutations require the header x-or3-admin-intent: admin', 'admin_intent_required');
  }
  await next();
});

const listQuery = z.strictObject({
  q: z.string().trim().max(40).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  includeDeleted: z.enum(['true', 'false']).optional(),
});

const parseQuery = (c: Context<AppEnv>) => queryParams(c, listQuery);

/** The LIKE pattern of a search; 400 if it would exceed the platform cap. */
function searchPattern(q: string | undefined): string | null {
  if (!q) return null;
  const pattern = likePattern(q);
  if (pattern === null) throw badRequest(`q is too long to search for (at most ${PLATFORM.likePatternBytes - 2} bytes once escaped)`, 'invalid_query');
  return pattern;
}

// The principal is memoised per request, so this re-reads nothing.
const auditBase = async (c: Context<AppEnv>) => ({ actorId: (await requireUser(c)).userId });

export const admin = new Hono<AppEnv>()
  .use('*', requireAdmin)
  .route('/', auditAdmin)
  .route('/', archiveAdmin)
  .route('/', accountAdmin)
  .route('/', metricsAdmin)

  .get('/users', async (c) => {
    const query = parseQuery(c);
    return c.json(await listUsers(c.env.DB, { ...query, pattern: searchPattern(query.q) }));
  })

  .get('/workspaces', async (c) => {
    const query = parseQuery(c);
    return c.json(await listAllWorkspaces(c.env.DB, { ...query, pattern: searchPattern(query.q), includeDeleted: query.includeDeleted === 'true' }));
  })

  .put('/workspaces/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    const body = await jsonBody(c, z.strictObject({ role: z.enum(ROLES) }));
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    memberChangeResult(await upsertMember(c.env.DB, workspaceId, userId, body.role));
    await forgetAccess(c.env, workspaceId, { userId });
    audit(c, 'admin.member.upserted', { ...(await auditBase(c)), workspaceId, targetUserId: userId, role: body.role });
    return c.json({ ok: true });
  })

  .delete('/workspaces/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    memberChangeResult(await removeMember(c.env.DB, workspaceId, userId));
    await c.env.WORKSPACE.getByName(workspaceId).closeSockets(userId);
    audit(c, 'admin.member.removed', { ...(await auditBase(c)), workspaceId, targetUserId: userId });
    return c.json({ ok: true });
  })

  .delete('/workspaces/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    await setWorkspaceDeleted(c.env.DB, workspaceId, true);
    await c.env.WORKSPACE.getByName(workspaceId).closeSockets();
    audit(c, 'admin.workspace.deleted', { ...(await auditBase(c)), workspaceId });
    return c.json({ ok: true });
  })

  .post('/workspaces/:id/restore', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    await setWorkspaceDeleted(c.env.DB, workspaceId, false);
    await forgetAccess(c.env, workspaceId); // its members were refused while it was deleted
    audit(c, 'admin.workspace.restored', { ...(await auditBase(c)), workspaceId });
    return c.json({ ok: true });
  })

  /**
   * Restore or fork: a new workspace built by replaying the source's history (archive + live
   * log) into a fresh object, up to `untilVersion` or `untilTime` (epoch ms or ISO) if given.
   * The calling admin owns the fork; the source is untouched.
   */
  .post('/workspaces/:id/fork', async (c) => {
    const sourceId = param(c.req.param('id'), 'workspace id');
    const body = await jsonBody(
      c,
      z
        .strictObject({
          untilVersion: z.number().int().min(0).optional(),
          untilTime: z.union([z.number().int().min(0), z.iso.datetime()]).optional(),
          name: z.string().trim().min(1).max(100).optional(),
        })
        .refine((b) => b.untilVersion === undefined || b.untilTime === undefined, { message: 'give untilVersion or untilTime, not both' }),
      { allowEmpty: true },
    );
    const sourceName = await workspaceName(c.env.DB, sourceId);
    if (sourceName === null) throw notFound('No such workspace');
    const admin = await requireUser(c);
    const untilTime = body.untilTime === undefined ? undefined : typeof body.untilTime === 'number' ? body.untilTime : Date.parse(body.untilTime);
    const keep = (e: ArchivedEntry) =>
      (body.untilVersion === undefined || e.serverVersion <= body.untilVersion) && (untilTime === undefined || e.createdAt <= untilTime);
    const forkId = await createWorkspace(c.env.DB, admin.userId, body.name ?? `${sourceName} (fork)`, null);
    const target = c.env.WORKSPACE.getByName(forkId);
    let imported = 0;
    let serverVersion = 0;
    try {
      const history = readHistory(c.env.BLOBS, c.env.WORKSPACE.getByName(sourceId) as unknown as ExportSource, sourceId, null);
      for await (const page of history) {
        const entries = page.filter(keep);
        if (entries.length) {
          const result = await target.importHistory(entries);
          imported += result.imported;
          serverVersion = result.serverVersion;
        }
        if (entries.length < page.length) break; // history is in version (and time) order
      }
    } catch (err) {
      // A history that cannot be replayed (e.g. a payload stored before nesting was bounded,
      // which cannot cross an RPC boundary): nothing of the fork may stay behind.
      logEvent('error', 'fork_failed', { workspaceId: sourceId, forkId, imported, message: err instanceof Error ? err.message : String(err) });
      await target.discard();
      await discardWorkspace(c.env.DB, forkId);
      throw new ApiError(422, 'fork_failed', `The history of this workspace could not be replayed after ${imported} changes; no fork was created`);
    }
    audit(c, 'admin.workspace.forked', { ...(await auditBase(c)), workspaceId: sourceId, forkId, imported });
    return c.json({ id: forkId, imported, serverVersion });
  })

  .put('/users/:id/admin', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    if (!(await grantAdmin(c.env.DB, userId))) throw notFound('No such user', 'no_user');
    audit(c, 'admin.admin.granted', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  })

  .delete('/users/:id/admin', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    const revoked = await revokeAdmin(c.env.DB, userId);
    if (revoked === 'no_user') throw notFound('No such user', 'no_user');
    if (revoked === 'last_admin') throw conflict('The last deployment admin cannot be revoked', 'last_admin');
    audit(c, 'admin.admin.revoked', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  });
