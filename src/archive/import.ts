/**
 * `POST /api/admin/import` (docs/admin.md "Import"): recreates a workspace from the JSONL an
 * export produces (src/archive/export.ts), plus two line types only an admin's import carries:
 * `user` (accounts with their password hash and federated identities) and `invite` (pending
 * invites by token hash). An owner's export never holds either.
 *
 * The body is never held in memory. It is staged into R2 as it arrives (Content-Length is
 * required, and bounded), then read line by line twice, and deleted; a body a killed run left
 * behind is replaced by its rerun (same `x-or3-import-id`) or collected once it is an hour old:
 * 1. validation: JSON, line types, fields, the format version, one header first and one `end`
 *    last (a stream cut off has none). Any fault answers 400 naming the line, before anything is
 *    written. Lines that are well formed but cannot be applied (a payload breaking its table's
 *    rules, a legacy md5 file, an unknown password-hash format) are reported as skipped.
 * 2. apply, in batches and in stream order: the workspace (D1) if absent, users, members (only
 *    users that exist here), invites, history through the workspace object's replay (opIds are
 *    kept, so a replayed change allocates nothing), state items that beat the current winner,
 *    and file records for blobs whose object is already in R2.
 * Every step is conditional, so importing the same stream twice changes nothing the second time,
 * and a run cut off midway and repeated ends where one run would have.
 */
import type { Context } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { ApiError, badRequest, conflict, payloadTooLarge } from '../errors';
import { logEvent } from '../http/logger';
import { ensureImportedWorkspace } from '../admin/store';
import { IMPORT_LIMITS, id, readStream, type Destination, type Line } from './import-lines';
import { Applier, newReport, skip, type ImportReport } from './import-apply';
import { ensureOwner, workspaceRowChanged } from '../workspace-records/member-writes';

export const importQuery = z.strictObject({
  workspaceId: id.optional(),
  name: z.string().trim().min(1).max(100).optional(),
  dryRun: z.enum(['true', 'false']).optional(),
  /**
   * Existing accounts (comma-separated user ids, at most 100) whose `user` line may link its
   * identities to them: the operator's confirmation. Without it an existing account's line links
   * nothing and is reported (docs/security.md "Import").
   */
  linkExisting: z
    .string()
    .max(100 * 129)
    .transform((s) => s.split(',').filter(Boolean))
    .pipe(z.array(id).max(100))
    .optional(),
});

/** Where streams are staged in R2 while they are read (docs/admin.md "Import"). */
const STAGED_PREFIX = 'imports/v1/';
/**
 * A staged body older than this belongs to an import that was killed (its request ended without
 * the cleanup): the next import deletes it. An import that is still running is never this old
 * (the importer sends parts of 32 MiB; split larger streams).
 */
export const STAGED_IMPORT_TTL_MS = 60 * 60 * 1000;
/** Staged bodies looked at per import for expiry (more are collected by the next ones). */
const STAGED_SWEEP = 100;

/** Deletes staged imports past STAGED_IMPORT_TTL_MS (a killed run's); never throws. */
async function collectStaleImports(bucket: R2Bucket, now = Date.now()): Promise<void> {
  try {
    const listed = await bucket.list({ prefix: STAGED_PREFIX, limit: STAGED_SWEEP, include: ['customMetadata'] });
    const stagedAt = (o: R2Object) => Number(o.customMetadata?.stagedAt ?? o.uploaded.getTime());
    const stale = listed.objects.filter((o) => stagedAt(o) < now - STAGED_IMPORT_TTL_MS).map((o) => o.key);
    if (stale.length) await bucket.delete(stale);
  } catch (err) {
    logEvent('warn', 'staged_import_sweep_failed', { message: err instanceof Error ? err.message : String(err) });
  }
}

/**
 * The staging key: with the client's `x-or3-import-id` (the importer sends its part's SHA-256),
 * the same for every run of that part by this admin, so a rerun after a kill replaces the killed
 * run's body instead of adding one; without it, a fresh key.
 */
function stagingKey(c: Context<AppEnv>, actorId: string): string {
  const importId = c.req.header('x-or3-import-id');
  if (importId !== undefined && !/^[A-Za-z0-9_-]{1,128}$/.test(importId))
    throw badRequest('x-or3-import-id must be 1-128 letters, digits, - or _', 'invalid_import_id');
  return `${STAGED_PREFIX}${actorId}/${importId ?? crypto.randomUUID()}.jsonl`;
}

/** A streamed body as a fixed-length stream R2 can store, or 411/413. */
function declaredLength(c: Context<AppEnv>): number {
  const declared = c.req.header('content-length');
  if (declared === undefined || !/^\d+$/.test(declared)) throw new ApiError(411, 'length_required', 'An import needs a Content-Length header');
  const length = Number(declared);
  if (length > IMPORT_LIMITS.maxBytes) throw payloadTooLarge(`An import may be at most ${IMPORT_LIMITS.maxBytes} bytes; split the stream`);
  if (length === 0 || !c.req.raw.body) throw badRequest('The import stream is empty', 'invalid_import');
  return length;
}

/**
 * Runs an import: validates and (unless a dry run) applies the stream, and returns the report.
 * A dry run reads the body once, straight from the request, and writes nothing.
 */
export async function runImport(c: Context<AppEnv>, query: z.output<typeof importQuery>, actorId: string): Promise<ImportReport> {
  const dryRun = query.dryRun === 'true';
  const length = declaredLength(c);
  const report = newReport(dryRun);
  const ctx: Destination = { target: null, queryWorkspaceId: query.workspaceId };
  if (dryRun) {
    report.lines = await readStream(c.req.raw.body!, ctx, (n, parsed) => {
      report.counts[parsed.type] = (report.counts[parsed.type] ?? 0) + 1;
      if (parsed.skip) skip(report, { line: n, type: parsed.type, key: parsed.key, reason: parsed.skip });
    });
    report.workspaceId = ctx.target;
    return report;
  }

  // Stage the body in R2 as it arrives (a FixedLengthStream makes R2 refuse a body shorter than declared).
  const bucket = c.env.BLOBS;
  const key = stagingKey(c, actorId);
  await collectStaleImports(bucket);
  try {
    let etag: string;
    try {
      const { readable, writable } = new FixedLengthStream(length);
      const [, staged] = await Promise.all([c.req.raw.body!.pipeTo(writable), bucket.put(key, readable, { customMetadata: { stagedAt: String(Date.now()) } })]);
      if (!staged) throw new Error('not stored');
      etag = staged.etag;
    } catch {
      throw badRequest(`The body ended before its Content-Length (${length} bytes): the stream was cut off`, 'invalid_import');
    }
    // Both passes read exactly what was staged: a concurrent run with the same import id that
    // replaced it makes this one stop (409) rather than apply a body it did not validate.
    const object = async () => {
      const o = await bucket.get(key, { onlyIf: { etagMatches: etag } });
      if (!o) throw conflict('Another import with the same x-or3-import-id removed this one; run it again', 'import_replaced');
      if (!('body' in o)) throw conflict('Another import with the same x-or3-import-id replaced this one; run it again', 'import_replaced');
      return o.body;
    };
    // Pass 1: everything is checked before anything is written.
    let header: Line<'header'> | null = null;
    report.lines = await readStream(await object(), ctx, (_n, parsed) => {
      report.counts[parsed.type] = (report.counts[parsed.type] ?? 0) + 1;
      if (parsed.type === 'header') header = parsed.line;
    });
    const head = header as Line<'header'> | null;
    report.workspaceId = ctx.target;
    // Pass 2: apply.
    if (ctx.target !== null) {
      report.workspaceCreated = await ensureImportedWorkspace(c.env.DB, {
        id: ctx.target,
        name: query.name ?? head?.name ?? 'Imported workspace',
        description: head?.description ?? null,
        createdBy: actorId,
        createdAt: head?.createdAt ?? Date.now(),
      });
      await workspaceRowChanged(c.env, ctx.target); // the object knows its row before members are written to it
    }
    const applier = new Applier(c, report, ctx.target, actorId, head?.exportedBy, new Set(query.linkExisting ?? []));
    const applyCtx: Destination = { target: null, queryWorkspaceId: query.workspaceId };
    await readStream(await object(), applyCtx, (n, parsed) => applier.add(n, parsed));
    await applier.finish();
    if (ctx.target !== null && (await ensureOwner(c.env, ctx.target, actorId))) {
      report.notes.push('No imported member is an owner here: the importing admin was made the owner');
    }
    return report;
  } finally {
    await bucket.delete(key).catch(() => undefined);
  }
}
