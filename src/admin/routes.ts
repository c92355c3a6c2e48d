/**
 * `/api/admin/*`: deployment administration. Only deployment admins (a user flag, not a
 * workspace role) get in; every mutation also needs `x-or3-admin-intent: admin`, so a stray
 * cross-site or scripted request cannot trigger one by accident, and each is audited.
 */
import { Hono, type Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import * as z from 'zod';
import { audit } from '../archive/audit';
import { archiveAdmin } from '../archive/admin';
import { requireUser } from '../auth/authenticate';
import type { AppEnv } from '../env';
import { jsonBody, queryParams } from '../http/body';
import { PLATFORM } from '../limits';
import { ApiError, badRequest, conflict, forbidden, notFound } from '../http/errors';
import { logEvent } from '../http/logger';
import { ROLES } from '../workspaces/permissions';
import { memberChangeResult, param } from '../workspaces/routes';
import { createWorkspace, discardWorkspace, removeMember, setWorkspaceDeleted, upsertMember, workspaceExists } from '../workspaces/store';
import { readHistory, type ExportSource } from '../archive/export';
import type { ArchivedEntry } from '../archive/archive';

type AdminEnv = AppEnv;

const requireAdmin = createMiddleware<AdminEnv>(async (c, next) => {
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

const parseQuery = (c: Context<AdminEnv>) => queryParams(c, listQuery);

/** A LIKE pattern that matches `q` literally anywhere; 400 if it would exceed the platform cap. */
function likePattern(q: string): string {
  const pattern = `%${q.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
  if (new TextEncoder().encode(pattern).byteLength > PLATFORM.likePatternBytes) {
    throw badRequest(`q is too long to search for (at most ${PLATFORM.likePatternBytes - 2} bytes once escaped)`, 'invalid_query');
  }
  return pattern;
}

// The principal is memoised per request, so this re-reads nothing.
const auditBase = async (c: Context<AdminEnv>) => ({ actorId: (await requireUser(c)).userId });

export const admin = new Hono<AdminEnv>()
  .use('*', requireAdmin)
  .route('/', archiveAdmin)

  .get('/users', async (c) => {
    const { q, limit, offset } = parseQuery(c);
    const { results } = await c.env.DB.prepare(
      `SELECT id, email, display_name, is_admin, disabled_at, created_at FROM users
        WHERE ?1 IS NULL OR lower(coalesce(email, '')) LIKE ?1 ESCAPE '\\' OR lower(coalesce(display_name, '')) LIKE ?1 ESCAPE '\\' OR id = ?2
        ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4`,
    )
      .bind(q ? likePattern(q) : null, q ?? null, limit + 1, offset)
      .all<{ id: string; email: string | null; display_name: string | null; is_admin: number; disabled_at: number | null; created_at: number }>();
    return c.json({
      users: results.slice(0, limit).map((u) => ({
        id: u.id,
        email: u.email,
        displayName: u.display_name,
        deploymentAdmin: u.is_admin === 1,
        disabled: u.disabled_at !== null,
        createdAt: new Date(u.created_at).toISOString(),
      })),
      nextOffset: results.length > limit ? offset + limit : null,
    });
  })

  .get('/workspaces', async (c) => {
    const { q, limit, offset, includeDeleted } = parseQuery(c);
    const { results } = await c.env.DB.prepare(
      `SELECT w.id, w.name, w.description, w.created_at, w.deleted_at, (SELECT count(*) FROM members m WHERE m.workspace_id = w.id) AS member_count
         FROM workspaces w
        WHERE (?1 IS NULL OR lower(w.name) LIKE ?1 ESCAPE '\\' OR w.id = ?2) AND (?3 = 1 OR w.deleted_at IS NULL)
        ORDER BY w.created_at DESC, w.id LIMIT ?4 OFFSET ?5`,
    )
      .bind(q ? likePattern(q) : null, q ?? null, includeDeleted === 'true' ? 1 : 0, limit + 1, offset)
      .all<{ id: string; name: string; description: string | null; created_at: number; deleted_at: number | null; member_count: number }>();
    return c.json({
      workspaces: results.slice(0, limit).map((w) => ({
        id: w.id,
        name: w.name,
        description: w.description,
        memberCount: w.member_count,
        createdAt: new Date(w.created_at).toISOString(),
        deletedAt: w.deleted_at === null ? null : new Date(w.deleted_at).toISOString(),
      })),
      nextOffset: results.length > limit ? offset + limit : null,
    });
  })

  .put('/workspaces/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    const body = await jsonBody(c, z.strictObject({ role: z.enum(ROLES) }));
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    memberChangeResult(await upsertMember(c.env.DB, workspaceId, userId, body.role));
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
    const source = await c.env.DB.prepare('SELECT name FROM workspaces WHERE id = ?').bind(sourceId).first<{ name: string }>();
    if (!source) throw notFound('No such workspace');
    const admin = await requireUser(c);
    const untilTime = body.untilTime === undefined ? undefined : typeof body.untilTime === 'number' ? body.untilTime : Date.parse(body.untilTime);
    const keep = (e: ArchivedEntry) => (body.untilVersion === undefined || e.serverVersion <= body.untilVersion) && (untilTime === undefined || e.createdAt <= untilTime);
    const forkId = await createWorkspace(c.env.DB, admin.userId, body.name ?? `${source.name} (fork)`, null);
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
    const result = await c.env.DB.prepare('UPDATE users SET is_admin = 1, updated_at = ? WHERE id = ?').bind(Date.now(), userId).run();
    if (result.meta.changes === 0) throw notFound('No such user', 'no_user');
    audit(c, 'admin.admin.granted', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  })

  .delete('/users/:id/admin', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    // One statement: the count and the update cannot interleave with another revoke.
    const result = await c.env.DB.prepare(
      // Disabled admins cannot act, so they do not count towards "another admin remains".
      'UPDATE users SET is_admin = 0, updated_at = ? WHERE id = ? AND is_admin = 1 AND (SELECT count(*) FROM users AS other WHERE other.is_admin = 1 AND other.disabled_at IS NULL AND other.id != users.id) > 0',
    )
      .bind(Date.now(), userId)
      .run();
    if (result.meta.changes === 0) {
      const row = await c.env.DB.prepare('SELECT is_admin FROM users WHERE id = ?').bind(userId).first<{ is_admin: number }>();
      if (!row) throw notFound('No such user', 'no_user');
      if (row.is_admin === 1) throw conflict('The last deployment admin cannot be revoked', 'last_admin');
    }
    audit(c, 'admin.admin.revoked', { ...(await auditBase(c)), targetUserId: userId });
    return c.json({ ok: true });
  });
