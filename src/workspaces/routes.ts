/**
 * `/api/workspaces`: list, create, rename, soft-delete, switch the active workspace, and the
 * ext routes for members and invites (docs/auth.md "Authorization" and "Invites"). Every route resolves the caller's
 * role through `authorizeWorkspace`.
 */
import { Hono } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { param } from '../http/param';
import { notFound, rateLimited } from '../errors';
import { requireUser } from '../auth/authenticate';
import { normalizeEmail } from '../auth/store';
import { randomToken, sha256Hex } from '../crypto';
import { audit } from '../audit/emit';
import { emitDeploymentEvent } from '../events/deployment';
import { authorizeWorkspace } from './authorize';
import { adoptMember, removeMember, setMemberRole, workspaceRowChanged } from '../workspace-records/member-writes';
import { memberChangeResult } from './member-change';
import { ROLES } from '../workspace-records/permissions';
import {
  acceptInvite,
  createInvite,
  createWorkspaceWithinLimit,
  listMembers,
  listPendingInvites,
  revokeInvite,
  setActiveWorkspace,
  setWorkspaceDeleted,
  updateWorkspace,
} from '../workspace-records/store';

export const INVITE_TTL = { defaultSeconds: 7 * 24 * 3600, minSeconds: 60, maxSeconds: 30 * 24 * 3600 } as const;

const name = z.string().trim().min(1, 'must not be empty').max(100);
const description = z.string().max(1000);
const id = z.string().min(1).max(128);

export const workspaces = new Hono<AppEnv>()
  .get('/', async (c) => {
    const principal = await requireUser(c);
    // From the user's object, which the workspaces' objects keep up to date: no D1 query.
    const list = await c.env.USER_DB.getByName(principal.userId).workspaces();
    return c.json({ workspaces: list.map((w) => ({ ...w, isActive: w.id === principal.activeWorkspaceId })) });
  })

  .post('/', async (c) => {
    const principal = await requireUser(c);
    const body = await jsonBody(c, z.strictObject({ name, description: description.nullable().optional() }));
    const created = await createWorkspaceWithinLimit(
      c.env.DB,
      principal.userId,
      body.name,
      body.description ?? null,
      c.get('config').workspaces.createLimitPerHour,
    );
    if (!created.ok) throw rateLimited(created.retryAfterMs / 1000);
    // D1 counted the creation and wrote the row with its owner; the object (the members' authority) adopts the owner.
    await adoptMember(c.env, created.id, principal.userId, 'owner', created.createdAt);
    emitDeploymentEvent(c, 'admin.workspace.created', { workspace_id: created.id, created_by: principal.userId });
    return c.json({ id: created.id });
  })

  .post('/active', async (c) => {
    const body = await jsonBody(c, z.strictObject({ id }));
    const { principal } = await authorizeWorkspace(c, body.id, 'read');
    await setActiveWorkspace(c.env.DB, principal.userId, body.id);
    await c.env.USER_DB.getByName(principal.userId).reloadProfile(); // the session endpoint answers from the user's object
    return c.json({ ok: true });
  })

  .post('/invites/accept', async (c) => {
    const principal = await requireUser(c);
    const body = await jsonBody(c, z.strictObject({ inviteToken: z.string().min(1).max(200) }));
    const now = Date.now();
    const result = await acceptInvite(c.env.DB, await sha256Hex(body.inviteToken), principal.userId, now);
    if (!result.ok) throw notFound('The invite is invalid, used or expired', 'invalid_invite');
    // D1 claimed the invite (its rules live there); the workspace's object adopts the membership.
    await adoptMember(c.env, result.workspaceId, principal.userId, result.role, now);
    return c.json({ ok: true, workspaceId: result.workspaceId });
  })

  .patch('/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    await authorizeWorkspace(c, workspaceId, 'write');
    const body = await jsonBody(c, z.strictObject({ name: name.optional(), description: description.nullable().optional() }));
    await updateWorkspace(c.env.DB, workspaceId, body);
    await workspaceRowChanged(c.env, workspaceId); // the members' "my workspaces" lists follow
    return c.json({ ok: true });
  })

  .delete('/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    await authorizeWorkspace(c, workspaceId, 'settings.manage');
    await setWorkspaceDeleted(c.env.DB, workspaceId, true);
    await workspaceRowChanged(c.env, workspaceId); // refuses everyone, closes every socket, lists follow
    emitDeploymentEvent(c, 'admin.workspace.deleted', { workspace_id: workspaceId });
    return c.json({ ok: true });
  })

  .get('/:id/members', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    await authorizeWorkspace(c, workspaceId, 'read');
    return c.json({ members: await listMembers(c.env.DB, workspaceId) });
  })

  .put('/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    await authorizeWorkspace(c, workspaceId, 'users.manage');
    const body = await jsonBody(c, z.strictObject({ role: z.enum(ROLES) }));
    memberChangeResult(await setMemberRole(c.env, workspaceId, userId, body.role));
    return c.json({ ok: true });
  })

  .delete('/:id/members/:userId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const userId = param(c.req.param('userId'), 'user id');
    const principal = await requireUser(c);
    // Members may leave by themselves; removing someone else takes users.manage.
    await authorizeWorkspace(c, workspaceId, principal.userId === userId ? 'read' : 'users.manage');
    // The object removes them, drops their cached role and closes their sockets.
    memberChangeResult(await removeMember(c.env, workspaceId, userId));
    return c.json({ ok: true });
  })

  .post('/:id/invites', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const { principal } = await authorizeWorkspace(c, workspaceId, 'users.manage');
    const body = await jsonBody(
      c,
      z.strictObject({
        role: z.enum(ROLES),
        expiresInSeconds: z.number().int().min(INVITE_TTL.minSeconds).max(INVITE_TTL.maxSeconds).optional(),
        /** Who the invite is for, as a note in the invite list; the token admits whoever holds it. */
        email: z.email().max(320).optional(),
      }),
    );
    const inviteToken = randomToken();
    const expiresAt = Date.now() + (body.expiresInSeconds ?? INVITE_TTL.defaultSeconds) * 1000;
    const email = body.email === undefined ? null : normalizeEmail(body.email);
    await createInvite(c.env.DB, { workspaceId, role: body.role, tokenHash: await sha256Hex(inviteToken), createdBy: principal.userId, expiresAt, email });
    return c.json({ inviteToken, expiresAt: new Date(expiresAt).toISOString() });
  })

  // Pending invites (those that could still admit someone), so an owner can see and revoke
  // what is outstanding. The token is shown once at creation and never again.
  .get('/:id/invites', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    await authorizeWorkspace(c, workspaceId, 'users.manage');
    return c.json({ invites: await listPendingInvites(c.env.DB, workspaceId) });
  })

  .delete('/:id/invites/:inviteId', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const inviteId = param(c.req.param('inviteId'), 'invite id');
    const { principal } = await authorizeWorkspace(c, workspaceId, 'users.manage');
    // Scoped by workspace: an invite of another workspace is as unknown as a made-up id.
    if (!(await revokeInvite(c.env.DB, workspaceId, inviteId))) throw notFound('No such pending invite in this workspace', 'invite_not_found');
    audit(c, 'workspace.invite.revoked', { actorId: principal.userId, workspaceId, inviteId });
    return c.json({ ok: true });
  });
