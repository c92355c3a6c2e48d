/**
 * `/api/storage/*` (docs/storage.md): presigned upload/download URLs, the Worker's own blob
 * routes those URLs point at, commit (exact quota), delete, usage and blob GC.
 *
 * Bodies are snake_case as OR3 sends them. Blob routes authenticate by signature only, never by
 * cookie, and are exempt from the CSRF guard (binary bodies) and from no-store (downloads are
 * `Cache-Control: private`).
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import { audit } from '../audit/emit';
import { requireUser } from '../auth/authenticate';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, forbidden, gone, notFound, unprocessable } from '../errors';
import type { StorageCaller } from '../workspace-contract';
import { shardAnswer, shardCaller } from '../workspaces/authorize';
import type { Permission } from '../workspace-records/permissions';
import { workspaceExists } from '../workspace-records/store';
import { multipartRoutes, partRoute } from './multipart';
import { requireHash, type ParsedHash } from '../../protocol/hashes';
import { blobKey } from './blob-keys';
import { r2Provider } from './providers';
import { reserveUploadPolicy, type StorageDeps } from './policy';
import { capabilityField, fileKindOf } from '../../protocol/capabilities';
import { genericFileHeaders, notAMember, requireFileKind } from './file-kind';
import { clampExpiry, URL_LIMITS, urlKeys, verify } from './signing';
import { evaluate, parseRange } from './conditional';
import { mimeType } from './mime-type';

const id = z.string().min(1).max(128);
const hash = z.string().min(1).max(80);
const disposition = z.enum(['inline', 'attachment']).optional();
const expiresIn = z
  .number()
  .int()
  .min(0)
  .max(7 * 24 * 3600 * 1000)
  .optional();

/** Declared by OR3 clients that understand generic files (docs/api.md "Capabilities"): 'v1' or absent. */
const file_kind_capability = capabilityField;
const presignUploadSchema = z.strictObject({
  workspace_id: id,
  hash,
  mime_type: mimeType,
  size_bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), // 0: an empty file, which OR3 accepts
  expires_in_ms: expiresIn,
  disposition,
  file_kind_capability,
});
const presignDownloadSchema = z.strictObject({
  workspace_id: id,
  hash,
  storage_id: z.string().max(400).optional(),
  /** Sent by newer OR3 clients; the server goes by its own records. */
  mime_type: mimeType.optional(),
  expires_in_ms: expiresIn,
  disposition,
  file_kind_capability,
});
const commitSchema = z.strictObject({
  workspace_id: id,
  hash,
  storage_id: z.string().min(1).max(400),
  /** Required by OR3's contract; not stored: the object's key and the configuration say where a blob lives. */
  storage_provider_id: z.string().min(1).max(64),
  mime_type: mimeType,
  size_bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  name: z.string().max(1024),
  kind: z.string().min(1).max(32),
  width: z.number().int().min(0).optional(),
  height: z.number().int().min(0).optional(),
  page_count: z.number().int().min(0).optional(),
  file_kind_capability,
  /** The upload intent presign-upload returned (docs/api.md "Upload intents"); clients that predate intents omit it. */
  intent_id: z.string().uuid().optional(),
});
const deleteSchema = z.strictObject({ workspace_id: id, hash, storage_id: z.string().min(1).max(400).optional() });
const gcSchema = z.strictObject({
  workspace_id: id,
  retention_seconds: z.number().int().min(0).max(31_536_000).optional(),
  limit: z.number().int().min(1).max(1000).optional(),
});

const stub = (c: Context<AppEnv>, workspaceId: string) => c.env.WORKSPACE.getByName(workspaceId);
const origin = (c: Context<AppEnv>) => new URL(c.req.url).origin;

/** The hash in a blob route's path (`/<algorithm>/<hex>`), parsed like any other. */
function pathHash(c: Context<AppEnv>, uploadable: boolean): { workspaceId: string; hash: ParsedHash; key: string } {
  const workspaceId = c.req.param('workspaceId') ?? '';
  const hash = requireHash(`${c.req.param('algorithm')}:${c.req.param('hex')}`, { uploadable });
  return { workspaceId, hash, key: blobKey(workspaceId, hash) };
}

/** Checks a blob URL's signature; 403 for anything forged or retired, 410 once expired (docs/storage.md). */
async function checkSignature(c: Context<AppEnv>, fields: Parameters<typeof verify>[1]) {
  const { storage } = c.get('config');
  const outcome = await verify(await urlKeys(storage.urlSecret, storage.urlSecretPrevious), fields, c.req.query('kid') ?? '', c.req.query('sig') ?? '');
  if (outcome === 'invalid') throw forbidden('This URL is not valid (tampered, or signed with a retired key)', 'invalid_signature');
  if (outcome === 'expired') throw gone('This URL has expired; ask for a new one', 'url_expired');
}

/**
 * Who a storage request acts as, for the one RPC that authorizes it at the workspace's object
 * (from its cache, no D1), plus one way in for deployment admins: with `x-or3-admin-intent:
 * admin` (the header every admin mutation needs) an admin may upload, commit and download in any
 * existing workspace without being a member. The OR3 importer moves blobs this way, through the
 * same signed URLs, hash check and quota (docs/admin.md).
 */
async function storageCaller(c: Context<AppEnv>, workspaceId: string, permission: Permission): Promise<StorageCaller> {
  if (c.req.header('x-or3-admin-intent') === 'admin') {
    const admin = await adminCaller(c, workspaceId);
    if (admin) return admin;
  }
  return shardCaller(c, workspaceId, permission);
}

/** The caller as a deployment admin, for an existing workspace (404 otherwise); null when not an admin. */
async function adminCaller(c: Context<AppEnv>, workspaceId: string): Promise<StorageCaller | null> {
  const principal = await requireUser(c);
  if (!principal.isAdmin) return null;
  if (!(await workspaceExists(c.env.DB, workspaceId))) throw notFound('No such workspace');
  return { workspaceId, admin: principal.userId };
}

/** The storage routes, built with the app's storage dependencies (hooks, upload provider). */
export const storageRoutes = (deps: StorageDeps) =>
  new Hono<AppEnv>()
    .route('/multipart', multipartRoutes(deps))
    .route('/', partRoute)
    .post('/presign-upload', async (c) => {
      const body = await jsonBody(c, presignUploadSchema);
      const caller = await storageCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      const config = c.get('config');
      // A generic file needs the capability (426 before anything is reserved) when its MIME type is allowed at all (else the
      // MIME policy's 415 stands, as in OR3), and passes any MIME list only where the deployment allows it.
      const generic = fileKindOf(body.mime_type) === 'file';
      const listed = config.storage.allowedMimeTypes.includes(body.mime_type.split(';')[0]!.trim().toLowerCase());
      requireFileKind(generic && (listed || config.storage.allowAnyFileType), body.file_kind_capability !== undefined);
      const max = clampExpiry('PUT', URL_LIMITS.uploadMaxMs);
      const options = await deps.hooks.filterUrl(
        { method: 'PUT', expiresAt: clampExpiry('PUT', body.expires_in_ms), disposition: body.disposition ?? 'inline' },
        { workspaceId: body.workspace_id, hash: hash.canonical },
        max,
      );
      // The intent lives as long as the URL: its expiry frees the reservation.
      const { state, intentId } = await reserveUploadPolicy(c, deps.hooks, caller, {
        workspaceId: body.workspace_id,
        hash,
        mimeType: body.mime_type,
        sizeBytes: body.size_bytes,
        expiresAt: options.expiresAt,
        strict: body.file_kind_capability !== undefined,
        anyMimeType: generic && config.storage.allowAnyFileType,
      });
      const alreadyPresent = state.committed;
      // A committed blob never gets a direct S3 URL: an S3 PUT would overwrite verified bytes.
      const uploadProvider = alreadyPresent ? r2Provider : deps.uploadProvider(config);
      const signed = await uploadProvider.presignUpload({
        workspaceId: body.workspace_id,
        hash,
        key,
        mimeType: body.mime_type,
        sizeBytes: body.size_bytes,
        expiresAt: options.expiresAt,
        disposition: options.disposition,
        origin: origin(c),
        config,
      });
      return c.json({ ...signed, expiresAt: options.expiresAt, storageId: key, storageProviderId: uploadProvider.id, alreadyPresent, intentId });
    })

    .post('/presign-download', async (c) => {
      const body = await jsonBody(c, presignDownloadSchema);
      const caller = await storageCaller(c, body.workspace_id, 'read');
      const hash = requireHash(body.hash);
      const key = blobKey(body.workspace_id, hash);
      // One RPC authorizes and answers the blob's facts. storage_id is optional and the key is
      // derived from workspace and hash, so a foreign or legacy storage_id is simply ignored. New
      // (sha256) files must be committed to be served; legacy md5 files predate commits and only
      // need to exist.
      const { userId, ...known } = shardAnswer(c, caller, await stub(c, body.workspace_id).downloadFacts(caller, hash.canonical));
      const facts = hash.algorithm === 'sha256' ? known : null;
      const present = facts ? facts.committed : (await c.env.BLOBS.head(key)) !== null;
      if (!present) throw notFound('No such file in this workspace', 'blob_not_found');
      // A generic file (its file_meta, or else its commit, says so) is for capable clients only, and only ever an attachment.
      const kind = facts?.meta?.kind ?? facts?.blob?.kind ?? null;
      const generic = kind === 'file' || (kind !== 'image' && kind !== 'pdf' && !!facts?.blob && fileKindOf(facts.blob.mimeType) === 'file');
      requireFileKind(generic, body.file_kind_capability !== undefined);
      const max = clampExpiry('GET', URL_LIMITS.downloadMaxMs);
      const options = await deps.hooks.filterUrl(
        { method: 'GET', expiresAt: clampExpiry('GET', body.expires_in_ms), disposition: generic ? 'attachment' : (body.disposition ?? 'inline') },
        { workspaceId: body.workspace_id, hash: hash.canonical },
        max,
      );
      if (generic) options.disposition = 'attachment';
      const config = c.get('config');
      const signed = await r2Provider.presignDownload({
        workspaceId: body.workspace_id,
        hash,
        key,
        mimeType: '',
        sizeBytes: 0,
        expiresAt: options.expiresAt,
        disposition: options.disposition,
        origin: origin(c),
        config,
        // The URL of a generic file names its user: the blob route checks membership and the live file_meta again.
        ...(generic ? { genericFor: userId } : {}),
      });
      return c.json({ ...signed, expiresAt: options.expiresAt, ...(generic ? { disposition: 'attachment' } : {}) });
    })

    .put('/blob/:workspaceId/:algorithm/:hex', async (c) => {
      const { workspaceId, hash, key } = pathHash(c, true);
      const size = Number(c.req.query('size'));
      const contentType = c.req.query('type') ?? '';
      const disp = c.req.query('disp') === 'attachment' ? 'attachment' : 'inline';
      await checkSignature(c, {
        method: 'PUT',
        workspaceId,
        key,
        expires: Number(c.req.query('exp')),
        size,
        hash: hash.canonical,
        disposition: disp,
        contentType,
      });
      const declared = c.req.header('content-length');
      if (declared === undefined) throw badRequest('Content-Length is required', 'length_required');
      if (Number(declared) !== size) throw badRequest(`Content-Length ${declared} does not match the signed size ${size}`, 'length_mismatch');
      let stored: R2Object | null;
      try {
        // R2 checks the SHA-256 itself and stores nothing on a mismatch; put-if-absent stores
        // identical content once.
        stored = await c.env.BLOBS.put(key, c.req.raw.body, {
          sha256: hash.hex,
          onlyIf: { etagDoesNotMatch: '*' },
          httpMetadata: { contentType },
          customMetadata: { verified: 'sha256' },
        });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (/checksum|10037|sha-?256/i.test(message)) throw unprocessable('The uploaded bytes do not match the hash', 'integrity_error');
        // R2 allows about one write per second to a key: two devices uploading the same file.
        if (/10058|429|too many|rate/i.test(message)) throw new ApiError(429, 'rate_limited', 'Rate limit exceeded. Retry after 1s', { 'Retry-After': '1' });
        throw err;
      }
      return c.json({ ok: true, alreadyPresent: stored === null });
    })

    .get('/blob/:workspaceId/:algorithm/:hex', async (c) => {
      const { workspaceId, hash, key } = pathHash(c, false);
      const disp = c.req.query('disp') === 'attachment' ? 'attachment' : 'inline';
      const expires = Number(c.req.query('exp'));
      const genericFor = c.req.query('g');
      await checkSignature(c, {
        method: 'GET',
        workspaceId,
        key,
        expires,
        size: 0,
        hash: hash.canonical,
        disposition: disp,
        contentType: genericFor ? `generic:${genericFor}` : '',
      });
      // A generic file's URL is authorized again on every use (docs/api.md "Downloads"): its user is still a member, its file_meta still live.
      let genericName: string | null = null;
      if (genericFor) {
        const facts = await stub(c, workspaceId).genericFileFacts(genericFor, hash.canonical);
        if (!facts.member) throw notAMember();
        if (!facts.committed || !facts.meta) throw notFound('No such file', 'blob_not_found');
        genericName = facts.meta.name ?? facts.blob?.name ?? null;
      }
      // One R2 read in the usual case: the range is asked for optimistically, and the
      // preconditions and If-Range are judged by us once the object's validators are known.
      const asked = parseRange(c.req.header('range'));
      const optimistic: R2Range | undefined = !asked
        ? undefined
        : 'suffix' in asked
          ? { suffix: asked.suffix }
          : { offset: asked.first, ...(asked.last === undefined ? {} : { length: asked.last - asked.first + 1 }) };
      let object: R2ObjectBody | null = null;
      try {
        object = await c.env.BLOBS.get(key, optimistic ? { range: optimistic } : {});
      } catch (err) {
        if (!optimistic) throw err; // R2 refuses some unsatisfiable ranges outright (10039): judged below
      }
      const meta: R2Object | null = object ?? (await c.env.BLOBS.head(key));
      if (!meta) throw notFound('No such file', 'blob_not_found');
      const outcome = evaluate(c.req.raw.headers, { etag: meta.httpEtag, lastModified: meta.uploaded.getTime(), size: meta.size });

      const headers = new Headers();
      meta.writeHttpMetadata(headers);
      headers.set('etag', meta.httpEtag);
      headers.set('last-modified', meta.uploaded.toUTCString());
      headers.set('accept-ranges', 'bytes');
      headers.set('content-disposition', `${disp}; filename="${hash.hex}"`);
      headers.set('cache-control', `private, max-age=${Math.max(0, Math.floor((expires - Date.now()) / 1000))}`);
      // Served from the API origin: never sniffed into HTML, never scripted, whatever the MIME list allows.
      headers.set('x-content-type-options', 'nosniff');
      headers.set('content-security-policy', "sandbox; default-src 'none'");
      if (genericFor) genericFileHeaders(headers, genericName, hash.hex);
      if (outcome.status !== 200 && outcome.status !== 206) {
        await object?.body.cancel();
        if (outcome.status === 416) return new Response(null, { status: 416, headers: { 'content-range': `bytes */${meta.size}` } });
        return new Response(null, { status: outcome.status, headers });
      }
      if (outcome.range) {
        // Only the rare R2 refusal of a range we find satisfiable lands here without a body.
        object ??= await c.env.BLOBS.get(key, { range: outcome.range });
        headers.set('content-range', `bytes ${outcome.range.offset}-${outcome.range.offset + outcome.range.length - 1}/${meta.size}`);
        headers.set('content-length', String(outcome.range.length));
      } else {
        // No range applies (none asked, one ignored, or If-Range no longer matches): the whole body.
        if (optimistic || !object) {
          await object?.body.cancel();
          object = await c.env.BLOBS.get(key);
        }
        headers.set('content-length', String(meta.size));
      }
      if (!object) throw notFound('No such file', 'blob_not_found');
      return new Response(object.body, { status: outcome.status, headers });
    })

    .post('/commit', async (c) => {
      const body = await jsonBody(c, commitSchema);
      const caller = await storageCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      if (body.storage_id !== key) throw badRequest('storage_id does not belong to this workspace and hash', 'invalid_storage_id');
      const generic = body.kind === 'file' || fileKindOf(body.mime_type) === 'file';
      requireFileKind(generic, body.file_kind_capability !== undefined);
      const config = c.get('config');
      await deps.hooks.checkUpload({
        workspaceId: body.workspace_id,
        userId: 'admin' in caller ? caller.admin : caller.credential.kind === 'federated' ? null : caller.credential.userId,
        hash: hash.canonical,
        mimeType: body.mime_type,
        sizeBytes: body.size_bytes,
        usedBytes: 0,
        config,
        anyMimeType: generic && config.storage.allowAnyFileType,
      });
      // One RPC: the object authorizes, checks the stored bytes (blob-objects.ts `checkStored`), then records and charges them.
      const result = shardAnswer(
        c,
        caller,
        await stub(c, body.workspace_id).commitBlob(caller, {
          hash: hash.canonical,
          hex: hash.hex,
          verify: config.storage.s3 !== undefined ? 'always' : 'unmarked',
          sizeBytes: body.size_bytes,
          mimeType: body.mime_type,
          storageKey: key,
          name: body.name,
          kind: body.kind,
          ...(body.intent_id ? { intentId: body.intent_id } : {}),
        }),
      );
      if ('admin' in caller)
        audit(c, 'admin.storage.committed', { actorId: result.userId, workspaceId: body.workspace_id, hash: hash.canonical, charged: result.charged });
      return c.json({ ok: true });
    })

    .post('/delete', async (c) => {
      const body = await jsonBody(c, deleteSchema);
      const caller = await shardCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash);
      // A storage_id names the object only as this workspace and hash derive it; anything else is not ours to touch.
      if (body.storage_id !== undefined && body.storage_id !== blobKey(body.workspace_id, hash))
        throw badRequest('storage_id does not belong to this workspace and hash', 'invalid_storage_id');
      // One RPC: the object authorizes, marks, deletes the R2 object and drops the record (blob-objects.ts `deleteBlob`).
      // Nothing committed: nothing to delete, and that is success (an upload in flight is not ours to remove).
      const result = shardAnswer(c, caller, await stub(c, body.workspace_id).deleteBlob(caller, hash.canonical));
      audit(c, 'storage.file.deleted', { actorId: result.userId, workspaceId: body.workspace_id, hash: hash.canonical, existed: result.existed });
      return c.json({ ok: true });
    })

    .get('/usage', async (c) => {
      const workspaceId = id.safeParse(c.req.query('workspace_id'));
      if (!workspaceId.success) throw badRequest('workspace_id is required', 'invalid_query');
      const caller = await storageCaller(c, workspaceId.data, 'read');
      const usage = shardAnswer(c, caller, await stub(c, workspaceId.data).usage(caller));
      const config = c.get('config');
      return c.json({
        used_bytes: usage.usedBytes,
        quota_bytes: config.storage.workspaceQuotaBytes,
        blob_count: usage.blobCount,
        sync_bytes: usage.syncBytes,
        sync_quota_bytes: config.sync.workspaceQuotaBytes,
      });
    })

    .post('/gc/run', async (c) => {
      const body = await jsonBody(c, gcSchema, { allowEmpty: false });
      const config = c.get('config');
      const options = {
        retentionSeconds: body.retention_seconds ?? config.storage.gcRetentionSeconds,
        limit: body.limit ?? 100,
      };
      const ws = stub(c, body.workspace_id);
      // Owners of the workspace (settings.manage, decided at the object: one RPC, no D1), or deployment admins for any existing workspace.
      const member = await shardCaller(c, body.workspace_id, 'settings.manage');
      let caller: StorageCaller = member;
      let result = await ws.collectBlobs(member, options);
      if (!result.ok && result.status === 403) {
        const admin = await adminCaller(c, body.workspace_id);
        if (admin) result = await ws.collectBlobs((caller = admin), options);
        else if (result.code === 'insufficient_role') result = { ...result, message: 'Only the workspace owner or a deployment admin can run storage GC' };
      }
      const done = shardAnswer(c, caller, result);
      audit(c, 'storage.gc.run', { actorId: done.userId, workspaceId: body.workspace_id, deleted: done.deleted_count, status: done.status });
      return c.json({ deleted_count: done.deleted_count, scanned_count: done.scanned_count, status: done.status });
    });
