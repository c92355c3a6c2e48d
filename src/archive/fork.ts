/**
 * Restore or fork (docs/operations.md), mounted under `/api/admin` behind its admin check by the
 * composition root (app.ts): a new workspace built by replaying the source's history (archive +
 * live log) into a fresh object, up to `untilVersion` or `untilTime` (epoch ms or ISO) if given.
 * The calling admin owns the fork; the source is untouched.
 */
import { Hono } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { audit } from '../audit/emit';
import { requireUser } from '../auth/authenticate';
import { ApiError, notFound } from '../errors';
import { jsonBody } from '../http/body';
import { logEvent } from '../http/logger';
import { param } from '../http/param';
import { discardWorkspace, workspaceName } from '../workspace-records/store';
import { createOwnedWorkspace, workspaceRowChanged } from '../workspace-records/member-writes';
import type { ArchivedEntry } from '../workspace-db/history-archive';
import { readHistory, type ExportSource } from './export';

export const forkAdmin = new Hono<AppEnv>().post('/workspaces/:id/fork', async (c) => {
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
  const forkId = await createOwnedWorkspace(c.env, admin.userId, body.name ?? `${sourceName} (fork)`, null);
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
    await discardWorkspace(c.env.DB, forkId);
    // Gone from D1: the object tells its members' lists (the admin's) before its storage goes.
    await workspaceRowChanged(c.env, forkId);
    await target.discard();
    throw new ApiError(422, 'fork_failed', `The history of this workspace could not be replayed after ${imported} changes; no fork was created`);
  }
  audit(c, 'admin.workspace.forked', { actorId: admin.userId, workspaceId: sourceId, forkId, imported });
  return c.json({ id: forkId, imported, serverVersion });
});
