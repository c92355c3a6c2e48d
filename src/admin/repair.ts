/**
 * Membership repair, mounted under `/api/admin` behind its admin check (docs/api.md "Repair";
 * docs/architecture.md "Members live with their workspace"). A workspace's object is the
 * authority for its members; D1's `members` rows and each user object's list of workspaces are
 * copies that follow every change. After a crash between the authority's write and a copy (or
 * a lost adoption of a membership D1 wrote first), these routes make the copies agree again:
 *
 *   POST /repair/workspaces/:id   reconcile one workspace: D1's copy and its members' lists follow the object
 *   POST /repair/users/:id        reconcile one user in every workspace D1 or their list names
 */
import { Hono } from 'hono';
import type { AppEnv } from '../env';
import { notFound } from '../errors';
import { param } from '../http/param';
import { requireUser } from '../auth/authenticate';
import { audit } from '../audit/emit';
import { repairUser } from '../workspace-records/member-writes';
import { workspaceExists } from '../workspace-records/store';
import { findUserById } from '../auth/store';

export const repairAdmin = new Hono<AppEnv>()
  .post('/repair/workspaces/:id', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    const report = await c.env.WORKSPACE.getByName(workspaceId).repairMembers();
    const { members, pending } = await c.env.WORKSPACE.getByName(workspaceId).members();
    audit(c, 'admin.members.repaired', { actorId: (await requireUser(c)).userId, workspaceId, ...report });
    return c.json({ ok: true, workspaceId, ...report, members: members.length, pending });
  })

  .post('/repair/users/:id', async (c) => {
    const userId = param(c.req.param('id'), 'user id');
    if (!(await findUserById(c.env.DB, userId))) throw notFound('No such user', 'no_user');
    const report = await repairUser(c.env, userId);
    audit(c, 'admin.members.repaired', { actorId: (await requireUser(c)).userId, targetUserId: userId, workspaces: report.workspaces });
    return c.json({ ok: true, userId, ...report });
  });
