/**
 * `GET /api/admin/workspaces/:id` (docs/admin.md "Workspaces"): one workspace as the console's
 * workspace page shows it: its record (deleted or not), members and roles, pending invites (never
 * a token), and from its object in one RPC: usage, GC and archive state, open sockets and the
 * hourly and daily counters. Mounted under `/api/admin`, behind the deployment-admin check.
 * (The admin's export of a workspace is the archive room's: archive/admin.ts.)
 */
import { Hono } from 'hono';
import type { AppEnv } from '../env';
import { notFound } from '../errors';
import { param } from '../http/param';
import { listMembers, listPendingInvites } from '../workspace-records/store';

export const workspaceView = new Hono<AppEnv>().get('/workspaces/:id', async (c) => {
  const workspaceId = param(c.req.param('id'), 'workspace id');
  const db = c.env.DB;
  const row = await db
    .prepare('SELECT id, name, description, created_at, deleted_at FROM workspaces WHERE id = ?')
    .bind(workspaceId)
    .first<{ id: string; name: string; description: string | null; created_at: number; deleted_at: number | null }>();
  if (!row) throw notFound('No such workspace');
  const [members, invites, view] = await Promise.all([
    listMembers(db, workspaceId),
    listPendingInvites(db, workspaceId),
    c.env.WORKSPACE.getByName(workspaceId).adminView(),
  ]);
  return c.json({
    workspace: {
      id: row.id,
      name: row.name,
      description: row.description,
      createdAt: new Date(row.created_at).toISOString(),
      deletedAt: row.deleted_at === null ? null : new Date(row.deleted_at).toISOString(),
    },
    members,
    invites,
    state: view.state,
    metrics: view.metrics,
  });
});
