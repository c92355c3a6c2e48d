/**
 * `GET /api/admin/audit?from=&to=&limit=&offset=&actor=&event=&workspace=`: the persisted audit
 * log for a UTC date range, optionally only one actor's, one event's (or one family's, `auth.*`)
 * or one workspace's events, a page at a time (docs/admin.md, docs/operations.md "Audit log").
 * Mounted under `/api/admin`, behind its deployment-admin check. Filters are compared as
 * values, never interpolated anywhere.
 */
import { Hono } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { queryParams } from '../http/body';
import { ApiError, badRequest } from '../errors';
import { logEvent } from '../http/logger';
import { utcDate } from '../r2-jsonl';
import { auditObjectNames } from './emit';
import { AUDIT_MAX_RANGE_DAYS, datesBetween, readAudit, type AuditRecord } from './log';

const day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD')
  .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) && utcDate(Date.parse(`${d}T00:00:00Z`)) === d, 'not a calendar date');

const auditQuery = z.strictObject({
  from: day.optional(),
  to: day.optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1_000),
  offset: z.coerce.number().int().min(0).max(10_000).default(0),
  actor: z.string().trim().min(1).max(128).optional(),
  event: z
    .string()
    .trim()
    .regex(/^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$/, 'an event name, or a family such as auth.*')
    .max(64)
    .optional(),
  workspace: z.string().trim().min(1).max(128).optional(),
});

/** The filter the query asks for; `event` ending in `.*` names a family (`auth.*`: every `auth.` event). */
function matcher(query: { actor?: string; event?: string; workspace?: string }): ((e: AuditRecord) => boolean) | undefined {
  const { actor, event, workspace } = query;
  if (actor === undefined && event === undefined && workspace === undefined) return undefined;
  const family = event?.endsWith('.*') ? event.slice(0, -1) : null;
  return (e) =>
    (actor === undefined || e.actorId === actor) &&
    (workspace === undefined || e.workspaceId === workspace) &&
    (event === undefined || (family === null ? e.event === event : e.event.startsWith(family)));
}

export const auditAdmin = new Hono<AppEnv>().get('/audit', async (c) => {
  const query = queryParams(c, auditQuery);
  const to = query.to ?? utcDate(Date.now());
  const from = query.from ?? to;
  if (from > to) throw badRequest('from must not be after to', 'invalid_query');
  const dates = datesBetween(from, to);
  if (dates.length > AUDIT_MAX_RANGE_DAYS) throw badRequest(`At most ${AUDIT_MAX_RANGE_DAYS} days per read`, 'invalid_query');
  // Events still waiting for their batch are written first, so the read is complete up to now.
  try {
    await Promise.all(auditObjectNames().map((name) => c.env.AUDIT.getByName(name).flush()));
  } catch (err) {
    logEvent('error', 'audit_flush_failed', { message: err instanceof Error ? err.message : String(err) });
    throw new ApiError(503, 'audit_unavailable', 'The audit log could not be written to storage; try again shortly', { 'Retry-After': '5' });
  }
  const { events, truncated } = await readAudit(c.env.BLOBS, dates, query.limit, { match: matcher(query), offset: query.offset });
  return c.json({ from, to, events, truncated, nextOffset: truncated ? query.offset + query.limit : null });
});
