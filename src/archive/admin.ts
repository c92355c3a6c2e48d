/**
 * The archive feature's admin routes, mounted under `/api/admin` behind its admin check:
 *
 *   POST /import                 recreate a workspace (and users) from an export stream (import.ts;
 *                                docs/admin.md "Import")
 *   GET  /workspaces/:id/export  the same JSONL export an owner gets (docs/admin.md "Export"), for
 *                                an admin who is not a member; like any export it leaves out other
 *                                users' notifications (here: everyone's but the admin's). Audited.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../env';
import { requireUser } from '../auth/authenticate';
import { param } from '../http/param';
import { workspaceExists } from '../workspace-records/store';
import { audit } from '../audit/emit';
import { notFound } from '../errors';
import { emitDeploymentEvent } from '../events/deployment';
import { queryParams } from '../http/body';
import { exportWorkspace } from './export';
import { importQuery, runImport } from './import';

export const archiveAdmin = new Hono<AppEnv>()
  /**
   * Import (docs/admin.md "Import"): the JSONL an export produces, streamed; 400 naming the line
   * for a malformed or cut-off stream (nothing written), else the report of what was applied
   * and what was skipped, and why.
   */
  .post('/import', async (c) => {
    const query = queryParams(c, importQuery);
    const actorId = (await requireUser(c)).userId;
    const report = await runImport(c, query, actorId);
    if (!report.dryRun) {
      audit(c, 'admin.import', {
        actorId,
        workspaceId: report.workspaceId ?? undefined,
        workspaceCreated: report.workspaceCreated,
        users: report.users.created,
        linkedIdentities: report.users.linked,
        members: report.members.added + report.members.updated,
        changes: report.changes.applied,
        rows: report.rows.applied,
        tombstones: report.tombstones.applied,
        files: report.files.recorded,
        skipped: report.skippedCount,
      });
      emitDeploymentEvent(c, 'admin.import.finished', { workspace_id: report.workspaceId ?? null, rows: report.rows.applied, changes: report.changes.applied });
    }
    return c.json(report);
  })
  .get('/workspaces/:id/export', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
    const { userId } = await requireUser(c);
    audit(c, 'admin.workspace.exported', { actorId: userId, workspaceId });
    return exportWorkspace(c, workspaceId, userId);
  });
