/**
 * Point-in-time restore of a workspace's object, mounted under `/api/admin` behind its admin
 * check (docs/operations.md "Point-in-time recovery"):
 *
 *   POST /workspaces/:id/point-in-time-restore   restore a workspace's object to a time (production only)
 */
import { Hono } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, conflict, fromFailure, notFound } from '../errors';
import { logEvent } from '../http/logger';
import { requireUser } from '../auth/authenticate';
import { param } from '../http/param';
import { workspaceExists } from '../workspace-records/store';
import { audit, recordAudit } from '../audit/emit';

/** How far back the platform keeps Durable Object bookmarks. */
const PITR_WINDOW_MS = 30 * 86_400_000;

const pitrBody = z.strictObject({
  /** The time to restore to: epoch ms or an ISO date-time, within the last 30 days. */
  at: z.union([z.number().int().min(0), z.iso.datetime()]),
  /** The workspace id again, so a pasted command cannot restore the wrong workspace. */
  confirm: z.string(),
  /**
   * Only finish an earlier restore whose last step failed (the 502 answer names this value):
   * no second rewind, just the client-safety step with the head from before the restore.
   */
  finishWithPreviousHead: z.number().int().min(0).optional(),
});

export const pitrAdmin = new Hono<AppEnv>()
  /**
   * Point-in-time recovery of one workspace's Durable Object. Guarded three ways: deployment
   * admin + intent header (the admin router), `confirm` must repeat the workspace id, and it
   * refuses to run outside production (local workerd has no bookmarks, and a dev server pointed
   * at real data must not rewind it by accident).
   */
  .post('/workspaces/:id/point-in-time-restore', async (c) => {
    const workspaceId = param(c.req.param('id'), 'workspace id');
    const body = await jsonBody(c, pitrBody);
    if (c.get('config').environment !== 'production')
      throw conflict('Point-in-time restore runs only in production (ENVIRONMENT=production)', 'pitr_unavailable');
    if (body.confirm !== workspaceId) throw badRequest('confirm must equal the workspace id', 'confirm_mismatch');
    const at = typeof body.at === 'number' ? body.at : Date.parse(body.at);
    const now = Date.now();
    if (at >= now || at < now - PITR_WINDOW_MS) throw badRequest('at must be in the past 30 days', 'invalid_time');
    if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');

    let previousHead = body.finishWithPreviousHead;
    let undoBookmark: string | null = null;
    let preparedBy: string | undefined;
    const actorId = (await requireUser(c)).userId;
    if (previousHead === undefined) {
      const stub = c.env.WORKSPACE.getByName(workspaceId);
      const prepared = await stub.pitrPrepare(at);
      if (!prepared.ok) throw fromFailure(prepared);
      previousHead = prepared.previousHead;
      undoBookmark = prepared.undoBookmark;
      preparedBy = prepared.instance;
      // Recorded before the restart: if anything below fails, the undo bookmark and the head are
      // still in the audit log.
      await recordAudit(c.env, 'admin.workspace.pitr', {
        requestId: c.get('requestId'),
        actorId,
        workspaceId,
        at: new Date(at).toISOString(),
        previousHead,
        undoBookmark,
        step: 'prepared',
      });
      await stub.pitrRestart().catch(() => undefined); // aborting rejects the call by design
    }
    let finished;
    try {
      // A fresh stub: the old one is bound to the aborted instance.
      finished = await c.env.WORKSPACE.getByName(workspaceId).pitrFinish(previousHead, preparedBy);
    } catch (err) {
      finished = { ok: false as const, status: 503 as const, code: 'pitr_finish_failed', message: err instanceof Error ? err.message : String(err) };
    }
    if (!finished.ok) {
      logEvent('error', 'pitr_finish_failed', { workspaceId, previousHead, code: finished.code, message: finished.message });
      throw new ApiError(
        502,
        'pitr_incomplete',
        `The restore's last step failed (${finished.code}); repeat this request with "finishWithPreviousHead": ${previousHead} (undo bookmark: ${undoBookmark ?? 'see the audit log'})`,
      );
    }
    audit(c, 'admin.workspace.pitr', {
      actorId,
      workspaceId,
      at: new Date(at).toISOString(),
      previousHead,
      restoredHead: finished.restoredHead,
      step: 'finished',
    });
    return c.json({
      workspaceId,
      restoredTo: new Date(at).toISOString(),
      previousHead,
      restoredHead: finished.restoredHead,
      serverVersion: finished.serverVersion,
      undoBookmark,
    });
  });
