/**
 * The archive feature's workspace route, mounted under `/api/workspaces` by the composition root
 * (app.ts), so the workspaces room imports nothing of the archive:
 *
 *   GET /:id/export   the workspace's whole history and files as one stream (owners; export.ts)
 */
import { Hono } from 'hono';
import type { AppEnv } from '../env';
import { param } from '../http/param';
import { authorizeWorkspace } from '../workspaces/authorize';
import { exportWorkspace } from './export';

export const workspaceExport = new Hono<AppEnv>().get('/:id/export', async (c) => {
  const workspaceId = param(c.req.param('id'), 'workspace id');
  const { principal } = await authorizeWorkspace(c, workspaceId, 'settings.manage');
  return exportWorkspace(c, workspaceId, principal.userId);
});
