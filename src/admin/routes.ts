/**
 * `/api/admin/*`: deployment administration. Only deployment admins (a user flag, not a
 * workspace role) get in; every mutation also needs `x-or3-admin-intent: admin`, so a stray
 * cross-site or scripted request cannot trigger one by accident, and each is audited.
 */
import { Hono, type Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { auditAdmin } from '../audit/routes';
import { metricsAdmin } from './metrics';
import { workspaceView } from './workspace-view';
import { pitrAdmin } from './pitr';
import { repairAdmin } from './repair';
import { requireUser } from '../auth/authenticate';
import type { AppEnv } from '../env';
import { jsonBody, queryParams } from '../http/body';
import { PLATFORM } from '../limits';
import { badRequest, conflict, forbidden, notFound } from '../errors';
import { ROLES } from '../workspace-records/permissions';
import { param } from '../http/param';
import { memberChangeResult } from '../workspaces/member-change';
import { removeMember, upsertMember, workspaceRowChanged } from '../workspace-records/member-writes';
import { setWorkspaceDeleted, workspaceExists } from '../workspace-records/store';
import { adminReader, grantAdmin, likePattern, listAllWorkspaces, listUsers, revokeAdmin } from './store';

/**
 * Another room's admin routes behind the same check (the composition root, app.ts, mounts them:
 * the admin room imports no feature's routes).
 */
export const adminOnly = (routes: Hono<AppEnv>) => new Hono<AppEnv>().use('*', requireAdmin).route('/', routes);

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
  .route('/', pitrAdmin)
  .route('/', repairAdmin)
  .route('/', metricsAdmin)
  .route('/', workspaceView)

  .get('/users', async (c) => {
    const query = parseQuery(c);
    return c.json(await listUsers(adminReader(c.env.DB), { ...query, pattern: searchPattern(query.q) }));
  })

  .get('/workspaces', async (c) => {
    const query = parseQuery(c);
    return c.json(
      await listAllWorkspaces(adminReader(c.env.DB), { ...query, pattern: searchPattern(query.q), includeDeleted: query.includeDeleted === 'true' }),
    );
  })

  .put('/workspaces/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    const body = await jsonBody(c, z.strictObject({ role: z.enum(ROLES) }));
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    memberChangeResult(await upsertMember(c.env, workspaceId, userId, body.role));
    audit(c, 'admin.member.upserted', { ...(await auditBase(c)), workspaceId, targetUserId: userId, role: body.role });
    return c.json({ ok: true });
  })

  .delete('/workspaces/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    memberChangeResult(await removeMember(c.env, workspaceId, userId));
    audit(c, 'admin.member.removed', { ...(await auditBase(c)), workspaceId, targetUserId: userId });
    return c.json({ ok: true });
  })

  .delete('/workspaces/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    await setWorkspaceDeleted(c.env.DB, workspaceId, true);
    await workspaceRowChanged(c.env, workspaceId); // refuses everyone, closes every socket, lists follow
    audit(c, 'admin.workspace.deleted', { ...(await auditBase(c)), workspaceId });
    return c.json({ ok: true });
  })

  .post('/workspaces/:id/restore', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    await setWorkspaceDeleted(c.env.DB, workspaceId, false);
    await workspaceRowChanged(c.env, workspaceId); // its members were refused while it was deleted
    audit(c, 'admin.workspace.restored', { ...(await auditBase(c)), workspaceId });
    return c.json({ ok: true });
  })

  .put('/users/:id/admin', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    if (!(await grantAdmin(c.env.DB, userId))) throw notFound('No such user', 'no_user');
    await c.env.USER_DB.getByName(userId).reloadFacts(); // the user's object keeps a copy of the flag
    audit(c, 'admin.admin.granted', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  })

  .delete('/users/:id/admin', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    const revoked = await revokeAdmin(c.env.DB, userId);
    if (revoked === 'no_user') throw notFound('No such user', 'no_user');
    if (revoked === 'last_admin') throw conflict('The last deployment admin cannot be revoked', 'last_admin');
    await c.env.USER_DB.getByName(userId).reloadFacts();
    audit(c, 'admin.admin.revoked', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  });
