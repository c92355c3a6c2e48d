/**
 * OR3's workspace admin routes (`/api/admin/workspace/*`, `/api/admin/search-users`) with OR3's
 * request and response shapes, so OR3's own admin screens work after a move (docs/admin.md
 * "OR3's workspace admin routes"). They act on the workspace named by `workspaceId` (body; the
 * query for `invites/list`), else on the caller's active workspace. A deployment admin may act
 * on any workspace; a workspace owner (users.manage) on their own. As in OR3, every POST needs
 * `x-or3-admin-intent: admin`, and the last owner cannot be demoted or removed (409).
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { requireUser } from '../auth/authenticate';
import { normalizeEmail } from '../auth/store';
import { randomToken, sha256Hex } from '../crypto';
import type { AppEnv } from '../env';
import { badRequest, forbidden, notFound } from '../errors';
import { jsonBody, queryParams } from '../http/body';
import { likePattern, listUsers } from '../admin/store';
import { authorizeWorkspace } from '../workspaces/authorize';
import { removeMember, setMemberRole, upsertMember } from '../workspace-records/member-writes';
import { ROLES } from '../workspace-records/permissions';
import { memberChangeResult } from '../workspaces/member-change';
import { createInvite, listMembers, listPendingInvites, revokeInvite, workspaceExists } from '../workspace-records/store';

const id = z.string().trim().min(1).max(128);
const SMALL = { maxBytes: 16 * 1024 };
const MAX_INVITE_SECONDS = 30 * 24 * 3600;
const DEFAULT_INVITE_SECONDS = 7 * 24 * 3600;

/** The workspace a request acts on, after checking the caller may manage its users. */
async function targetWorkspace(c: Context<AppEnv>, named: string | undefined): Promise<string> {
  const principal = await requireUser(c);
  if (c.req.method !== 'GET' && c.req.header('x-or3-admin-intent') !== 'admin') {
    throw forbidden('Admin mutations require the header x-or3-admin-intent: admin', 'admin_intent_required');
  }
  const workspaceId = named ?? principal.activeWorkspaceId;
  if (!workspaceId) throw badRequest('Workspace not resolved', 'workspace_required');
  if (principal.isAdmin) {
    const found = await workspaceExists(c.env.DB, workspaceId);
    if (!found || found.deleted) throw notFound('No such workspace');
  } else {
    await authorizeWorkspace(c, workspaceId, 'users.manage');
  }
  return workspaceId;
}

/**
 * Who an invite is made by. Invites admit only while their creator manages the workspace
 * (docs/auth.md "Invites"); a deployment admin who is not a member invites on behalf of an
 * owner (the audit entry names the admin).
 */
async function inviter(c: Context<AppEnv>, workspaceId: string): Promise<string | null> {
  const { userId } = await requireUser(c);
  const row = await c.env.DB.prepare(`SELECT user_id FROM members WHERE workspace_id = ?1 AND role = 'owner' ORDER BY user_id = ?2 DESC, created_at LIMIT 1`)
    .bind(workspaceId, userId)
    .first<{ user_id: string }>();
  return row?.user_id ?? null;
}

/** A user named by email or by id (OR3's `emailOrProviderId`), or by a federated subject with `provider`. */
async function resolveUser(db: D1Database, who: string, provider: string | undefined): Promise<string | null> {
  const row = provider
    ? await db.prepare('SELECT user_id AS id FROM identities WHERE provider = ? AND subject = ? LIMIT 1').bind(provider, who).first<{ id: string }>()
    : await db.prepare('SELECT id FROM users WHERE email = ?1 OR id = ?2 LIMIT 1').bind(normalizeEmail(who), who).first<{ id: string }>();
  return row?.id ?? null;
}

const actorOf = async (c: Context<AppEnv>) => (await requireUser(c)).userId;

export const or3WorkspaceAdmin = new Hono<AppEnv>()
  .post('/workspace/invites/create', async (c) => {
    const body = await jsonBody(
      c,
      z.strictObject({
        workspaceId: id.optional(),
        email: z.email().max(320),
        role: z.enum(ROLES).default('viewer'),
        expiresInSeconds: z.number().int().min(60).max(MAX_INVITE_SECONDS).optional(),
      }),
      SMALL,
    );
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    const createdBy = await inviter(c, workspaceId);
    if (!createdBy) throw badRequest('The workspace has no owner to invite on behalf of', 'no_owner');
    const token = randomToken();
    const expiresAt = Math.floor(Date.now() / 1000) + (body.expiresInSeconds ?? DEFAULT_INVITE_SECONDS);
    const inviteId = crypto.randomUUID();
    const email = normalizeEmail(body.email);
    await createInvite(c.env.DB, {
      id: inviteId,
      workspaceId,
      role: body.role,
      tokenHash: await sha256Hex(token),
      createdBy,
      expiresAt: expiresAt * 1000,
      email,
    });
    audit(c, 'workspace.invite.created', { actorId: await actorOf(c), workspaceId, role: body.role });
    return c.json({ ok: true, invite: { id: inviteId, email, role: body.role, expiresAt, token, inviteUrl: `/?invite=${encodeURIComponent(token)}` } });
  })

  .get('/workspace/invites/list', async (c) => {
    const query = queryParams(
      c,
      z.strictObject({
        workspaceId: id.optional(),
        status: z.enum(['pending', 'accepted', 'revoked', 'expired']).optional(),
        limit: z.coerce.number().int().min(1).max(500).optional(),
      }),
    );
    const workspaceId = await targetWorkspace(c, query.workspaceId);
    // Only pending invites are kept apart from used or expired ones here; other statuses list nothing.
    const pending = query.status === undefined || query.status === 'pending' ? await listPendingInvites(c.env.DB, workspaceId) : [];
    const invites = pending.slice(0, query.limit ?? 500).map((i) => ({
      id: i.id,
      workspaceId,
      email: i.email,
      role: i.role,
      status: 'pending',
      invitedByUserId: i.createdBy,
      expiresAt: Math.floor(Date.parse(i.expiresAt) / 1000),
    }));
    return c.json({ invites });
  })

  .post('/workspace/invites/revoke', async (c) => {
    const body = await jsonBody(c, z.strictObject({ workspaceId: id.optional(), inviteId: id }), SMALL);
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    if (!(await revokeInvite(c.env.DB, workspaceId, body.inviteId))) throw notFound('No pending invite with that id', 'no_invite');
    audit(c, 'workspace.invite.revoked', { actorId: await actorOf(c), workspaceId, inviteId: body.inviteId });
    return c.json({ ok: true });
  })

  .post('/workspace/members/upsert', async (c) => {
    const body = await jsonBody(
      c,
      z.strictObject({
        workspaceId: id.optional(),
        emailOrProviderId: z.string().trim().min(1).max(320),
        role: z.enum(ROLES),
        provider: z.string().min(1).max(64).optional(),
      }),
      SMALL,
    );
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    const userId = await resolveUser(c.env.DB, body.emailOrProviderId, body.provider);
    if (!userId) throw notFound('No such user', 'no_user');
    memberChangeResult(await upsertMember(c.env, workspaceId, userId, body.role));
    audit(c, 'admin.member.upserted', { actorId: await actorOf(c), workspaceId, targetUserId: userId, role: body.role });
    return c.json({ ok: true });
  })

  .post('/workspace/members/set-role', async (c) => {
    const body = await jsonBody(c, z.strictObject({ workspaceId: id.optional(), userId: id, role: z.enum(ROLES) }), SMALL);
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    memberChangeResult(await setMemberRole(c.env, workspaceId, body.userId, body.role));
    audit(c, 'admin.member.upserted', { actorId: await actorOf(c), workspaceId, targetUserId: body.userId, role: body.role });
    return c.json({ ok: true });
  })

  .post('/workspace/members/remove', async (c) => {
    const body = await jsonBody(c, z.strictObject({ workspaceId: id.optional(), userId: id }), SMALL);
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    memberChangeResult(await removeMember(c.env, workspaceId, body.userId));
    audit(c, 'admin.member.removed', { actorId: await actorOf(c), workspaceId, targetUserId: body.userId });
    return c.json({ ok: true });
  })

  /**
   * OR3's workspace page: the workspace, the caller's role (a deployment admin acts as owner, as
   * OR3's super admin does), its members in OR3's shape, plugins (none run here) and the guest
   * access setting.
   */
  .get('/workspace', async (c) => {
    const query = queryParams(c, z.strictObject({ workspaceId: id.optional() }));
    const workspaceId = await targetWorkspace(c, query.workspaceId);
    const principal = await requireUser(c);
    const [row, members] = await Promise.all([
      c.env.DB.prepare('SELECT name, guest_access FROM workspaces WHERE id = ?').bind(workspaceId).first<{ name: string; guest_access: number }>(),
      listMembers(c.env.DB, workspaceId),
    ]);
    if (!row) throw notFound('No such workspace');
    const own = members.find((m) => m.userId === principal.userId)?.role;
    return c.json({
      workspace: { id: workspaceId, name: row.name },
      role: principal.isAdmin ? 'owner' : (own ?? 'owner'),
      members,
      enabledPlugins: [],
      guestAccessEnabled: row.guest_access === 1,
    });
  })

  /**
   * OR3's `admin.guest_access.enabled`: stored and answered (GET /workspace) as OR3 does. As in
   * OR3's server, nothing reads it: no route serves a workspace to a guest (docs/admin.md).
   */
  .post('/workspace/guest-access/set', async (c) => {
    const body = await jsonBody(c, z.strictObject({ workspaceId: id.optional(), enabled: z.boolean() }), SMALL);
    const workspaceId = await targetWorkspace(c, body.workspaceId);
    await c.env.DB.prepare('UPDATE workspaces SET guest_access = ?, updated_at = ? WHERE id = ?')
      .bind(body.enabled ? 1 : 0, Date.now(), workspaceId)
      .run();
    audit(c, 'admin.guest_access.set', { actorId: await actorOf(c), workspaceId, enabled: body.enabled });
    return c.json({ ok: true });
  })

  /** Deployment admins only: it reads every account. OR3 answers a bare array. */
  .get('/search-users', async (c) => {
    const principal = await requireUser(c);
    if (!principal.isAdmin) throw forbidden('Deployment admin access required', 'admin_required');
    const query = queryParams(c, z.strictObject({ q: z.string().max(40).optional(), limit: z.coerce.number().int().min(1).max(50).default(20) }));
    const q = query.q?.trim();
    if (!q) return c.json([]);
    const pattern = likePattern(q);
    if (pattern === null) throw badRequest('q is too long', 'invalid_query');
    const { users } = await listUsers(c.env.DB, { q, pattern, limit: query.limit, offset: 0 });
    return c.json(users.map((u) => ({ userId: u.id, email: u.email ?? undefined, displayName: u.displayName ?? undefined })));
  });
