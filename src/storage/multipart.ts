/**
 * Large files (docs/storage.md "Large files (ext)", additive to OR3's contract): R2 multipart uploads through Worker-signed part URLs,
 * for files larger than one request body (Workers accept 100 MB on common plans).
 *
 *   POST /api/storage/multipart/create   → { uploadId, storageId, partSize, partCount, parts: [{ partNumber, size, url }] }
 *   PUT  <part url>                      → { partNumber, etag }
 *   POST /api/storage/multipart/urls     → fresh part URLs for the same upload (resume after an interruption or expiry)
 *   POST /api/storage/multipart/complete → assembles the parts, then verifies the SHA-256 (422 and removal on mismatch)
 *   POST /api/storage/multipart/abort
 *
 * The size is fixed at create: the upload id the client gets seals the declared size, part size
 * and MIME type (upload-id.ts), `/urls` refuses any other size and `/complete` refuses an
 * assembly of any other size, and both run the upload policy (size limit, MIME, quota) again,
 * because the configuration or the workspace's usage may have changed since create. Each part URL
 * is signed over the upload id, the part number and that part's exact size, so a part cannot be
 * replayed into another upload or another position. R2 requires equal parts (except the last) of
 * at least 5 MiB; incomplete uploads expire after 7 days.
 *
 * R2's error text never reaches the client (it names internals); it is logged, and the client
 * gets a message saying what to do.
 *
 * Parts are assembled under a staging key, then moved to the blob's key with R2's own SHA-256
 * check and put-if-absent: a corrupt or concurrent completion can never replace or remove a
 * blob that is already stored.
 */
import { Hono, type Context } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { jsonBody } from '../http/body';
import { ApiError, badRequest, conflict, gone, payloadTooLarge, unprocessable, WireError } from '../errors';
import { logEvent } from '../http/logger';
import { authorizeAtShard, shardCaller } from '../workspaces/authorize';
import { requireHash, type ParsedHash } from '../../protocol/hashes';
import { blobKey } from './blob-keys';
import { checkUploadPolicy, type StorageDeps } from './policy';
import type { StorageHooks } from './hooks';
import type { ShardCaller } from '../workspace-contract';
import { blobPath } from './providers';
import { clampExpiry, sign, URL_LIMITS, urlKeys, verify } from './signing';
import { openUploadId, parseUploadId, sealUploadId, type DeclaredUpload } from './upload-id';

export const MULTIPART = { minPartBytes: 5 * 1024 * 1024, defaultPartBytes: 10 * 1024 * 1024, maxPartBytes: 95 * 1024 * 1024, maxParts: 10_000 } as const;

const id = z.string().min(1).max(128);
const uploadShape = {
  workspace_id: id,
  hash: z.string().min(1).max(80),
  size_bytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  part_size_bytes: z.number().int().min(MULTIPART.minPartBytes).max(MULTIPART.maxPartBytes).optional(),
};
const createSchema = z.strictObject({
  ...uploadShape,
  mime_type: z
    .string()
    .max(255)
    .regex(/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i, 'must be a MIME type like application/pdf'),
});
const urlsSchema = z.strictObject({
  ...uploadShape,
  upload_id: z.string().min(1).max(1024),
  part_numbers: z.array(z.number().int().min(1).max(MULTIPART.maxParts)).max(1000).optional(),
});
const completeSchema = z.strictObject({
  workspace_id: id,
  hash: z.string().min(1).max(80),
  upload_id: z.string().min(1).max(1024),
  parts: z
    .array(z.strictObject({ partNumber: z.number().int().min(1).max(MULTIPART.maxParts), etag: z.string().min(1).max(256) }))
    .min(1)
    .max(MULTIPART.maxParts),
});
const abortSchema = z.strictObject({ workspace_id: id, hash: z.string().min(1).max(80), upload_id: z.string().min(1).max(1024) });

/** Where parts are assembled before the verified move to the blob's key. */
export const stagingKey = (key: string) => `staging/${key}`;

/** The signed "key" of one part: the object key plus the upload and the position. */
const partKey = (key: string, uploadId: string, partNumber: number) => `${key}#upload=${uploadId}#part=${partNumber}`;

function layout(size: number, requested?: number) {
  const partSize = requested ?? MULTIPART.defaultPartBytes;
  const partCount = Math.ceil(size / partSize);
  if (partCount > MULTIPART.maxParts) throw badRequest(`Too many parts (${partCount}); use a larger part_size_bytes`, 'too_many_parts');
  const sizeOf = (n: number) => (n < partCount ? partSize : size - partSize * (partCount - 1));
  return { partSize, partCount, sizeOf };
}

const signingKeys = (c: Context<AppEnv>) => {
  const { storage } = c.get('config');
  return urlKeys(storage.urlSecret, storage.urlSecretPrevious);
};

/** Logs what R2 said (server-side only) and answers the client without it. */
function r2Failure(c: Context<AppEnv>, step: string, err: unknown, message: string, code: string): ApiError {
  logEvent('warn', 'multipart_r2_error', { requestId: c.get('requestId'), step, message: err instanceof Error ? err.message : String(err) });
  return badRequest(message, code);
}

/** The upload as declared at create; 400 for an id we did not make for this blob, 410 once R2 has dropped it. */
async function declaredUpload(
  c: Context<AppEnv>,
  workspaceId: string,
  hash: ParsedHash,
  key: string,
  uploadId: string,
  opts: { allowExpired?: boolean } = {},
): Promise<DeclaredUpload> {
  const opened = await openUploadId(await signingKeys(c), { workspaceId, key, hash: hash.canonical }, uploadId);
  if (opened === 'invalid') throw badRequest('Unknown upload_id for this file; start the upload again with /multipart/create', 'invalid_upload');
  if (opened === 'expired') {
    const parsed = opts.allowExpired ? parseUploadId(uploadId) : null;
    if (parsed) return parsed;
    throw gone('This upload has expired; start again with /multipart/create', 'upload_expired');
  }
  return opened;
}

async function partUrls(
  c: Context<AppEnv>,
  workspaceId: string,
  hash: ParsedHash,
  key: string,
  uploadId: string,
  sizeOf: (n: number) => number,
  numbers: number[],
) {
  const keys = await signingKeys(c);
  const expires = clampExpiry('PUT', URL_LIMITS.uploadMaxMs);
  const origin = new URL(c.req.url).origin;
  const parts = [];
  for (const partNumber of numbers) {
    const size = sizeOf(partNumber);
    const { kid, sig } = await sign(keys, {
      method: 'PUT',
      workspaceId,
      key: partKey(key, uploadId, partNumber),
      expires,
      size,
      hash: hash.canonical,
      disposition: 'inline',
      contentType: '',
    });
    const query = new URLSearchParams({ uploadId, exp: String(expires), size: String(size), kid, sig });
    parts.push({ partNumber, size, url: `${origin}${blobPath(workspaceId, hash)}/parts/${partNumber}?${query}` });
  }
  return { parts, expiresAt: expires };
}

/** The upload policy (one RPC, policy.ts) for an upload as declared at create. */
const declaredPolicy = (c: Context<AppEnv>, hooks: StorageHooks, caller: ShardCaller, workspaceId: string, hash: ParsedHash, declared: DeclaredUpload) =>
  checkUploadPolicy(c, hooks, caller, { workspaceId, hash, mimeType: declared.mimeType, sizeBytes: declared.sizeBytes, multipart: true });

/** The multipart routes, built with the app's storage dependencies. */
export const multipartRoutes = ({ hooks }: StorageDeps) =>
  new Hono<AppEnv>()
    .post('/create', async (c) => {
      const body = await jsonBody(c, createSchema);
      const caller = await shardCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      const { state } = await checkUploadPolicy(c, hooks, caller, {
        workspaceId: body.workspace_id,
        hash,
        mimeType: body.mime_type,
        sizeBytes: body.size_bytes,
        multipart: true,
      });
      const { partSize, partCount, sizeOf } = layout(body.size_bytes, body.part_size_bytes);
      if (state.committed || (await c.env.BLOBS.head(key))) return c.json({ alreadyPresent: true, storageId: key, partSize, partCount, parts: [] });
      const upload = await c.env.BLOBS.createMultipartUpload(stagingKey(key), { httpMetadata: { contentType: body.mime_type } });
      const uploadId = await sealUploadId(
        await signingKeys(c),
        { workspaceId: body.workspace_id, key, hash: hash.canonical },
        { r2UploadId: upload.uploadId, sizeBytes: body.size_bytes, partSizeBytes: partSize, mimeType: body.mime_type },
      );
      const { parts, expiresAt } = await partUrls(
        c,
        body.workspace_id,
        hash,
        key,
        uploadId,
        sizeOf,
        Array.from({ length: partCount }, (_, i) => i + 1),
      );
      return c.json({ alreadyPresent: false, uploadId, storageId: key, partSize, partCount, parts, expiresAt });
    })

    .post('/urls', async (c) => {
      const body = await jsonBody(c, urlsSchema);
      const caller = await shardCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      const declared = await declaredUpload(c, body.workspace_id, hash, key, body.upload_id);
      if (body.size_bytes !== declared.sizeBytes) throw badRequest(`size_bytes must be the size declared at create (${declared.sizeBytes})`, 'size_mismatch');
      if (body.part_size_bytes !== undefined && body.part_size_bytes !== declared.partSizeBytes)
        throw badRequest(`part_size_bytes must be the part size chosen at create (${declared.partSizeBytes})`, 'size_mismatch');
      // The limits or the workspace's usage may have changed since create.
      await declaredPolicy(c, hooks, caller, body.workspace_id, hash, declared);
      const { partCount, sizeOf } = layout(declared.sizeBytes, declared.partSizeBytes);
      const numbers = body.part_numbers ?? Array.from({ length: partCount }, (_, i) => i + 1);
      if (numbers.some((n) => n > partCount)) throw badRequest(`part numbers go up to ${partCount}`, 'invalid_part');
      return c.json(await partUrls(c, body.workspace_id, hash, key, body.upload_id, sizeOf, numbers));
    })

    .post('/complete', async (c) => {
      const body = await jsonBody(c, completeSchema);
      const caller = await shardCaller(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      const staging = stagingKey(key);
      const declared = await declaredUpload(c, body.workspace_id, hash, key, body.upload_id);
      // The policy, for the declared size (an assembly of any other size is refused below), in
      // the one RPC, before R2 assembles anything; a refused upload is aborted, never completed.
      try {
        await declaredPolicy(c, hooks, caller, body.workspace_id, hash, declared);
      } catch (err) {
        if (err instanceof ApiError && err.status !== 401 && err.status !== 403)
          await c.env.BLOBS.resumeMultipartUpload(staging, declared.r2UploadId)
            .abort()
            .catch(() => undefined);
        throw err;
      }
      try {
        await c.env.BLOBS.resumeMultipartUpload(staging, declared.r2UploadId).complete([...body.parts].sort((a, b) => a.partNumber - b.partNumber));
      } catch (err) {
        throw r2Failure(
          c,
          'complete',
          err,
          'The upload could not be completed: check the part numbers and etags, or ask /multipart/urls for the missing parts',
          'multipart_failed',
        );
      }
      const assembled = await c.env.BLOBS.head(staging);
      if (!assembled) throw conflict('The assembled file disappeared (another completion of the same hash?); try again', 'multipart_failed');
      try {
        // Parts are bound to the declared size, so a difference means missing parts (or an upload
        // made before sizes were bound): either way it must not count.
        if (assembled.size > declared.sizeBytes)
          throw payloadTooLarge(
            `The assembled file has ${assembled.size} bytes, more than the ${declared.sizeBytes} declared at create; nothing was stored`,
            'size_mismatch',
          );
        if (assembled.size < declared.sizeBytes)
          throw unprocessable(
            `The assembled file has ${assembled.size} bytes, not the ${declared.sizeBytes} declared at create (missing parts?); nothing was stored`,
            'size_mismatch',
          );
        const object = await c.env.BLOBS.get(staging);
        if (!object) throw conflict('The assembled file disappeared (another completion of the same hash?); try again', 'multipart_failed');
        // R2 checks the SHA-256 as it stores, and put-if-absent never replaces a stored blob.
        const length = new FixedLengthStream(object.size);
        void object.body.pipeTo(length.writable).catch(() => undefined);
        const stored = await c.env.BLOBS.put(key, length.readable, {
          sha256: hash.hex,
          onlyIf: { etagDoesNotMatch: '*' },
          httpMetadata: object.httpMetadata ?? {},
          customMetadata: { verified: 'sha256' },
        });
        return c.json({ ok: true, storageId: key, alreadyPresent: stored === null });
      } catch (err) {
        if (err instanceof WireError) throw err;
        if (/checksum|10037|sha-?256/i.test(err instanceof Error ? err.message : '')) {
          throw unprocessable('The assembled file does not match the hash; nothing was stored', 'integrity_error');
        }
        throw err;
      } finally {
        // Whatever the outcome, the staged assembly never lingers (nothing uncharged stays in R2).
        await c.env.BLOBS.delete(staging);
      }
    })

    .post('/abort', async (c) => {
      const body = await jsonBody(c, abortSchema);
      await authorizeAtShard(c, body.workspace_id, 'write');
      const hash = requireHash(body.hash, { uploadable: true });
      const key = blobKey(body.workspace_id, hash);
      const declared = await declaredUpload(c, body.workspace_id, hash, key, body.upload_id, { allowExpired: true });
      await c.env.BLOBS.resumeMultipartUpload(stagingKey(key), declared.r2UploadId)
        .abort()
        .catch(() => undefined);
      return c.json({ ok: true });
    });

/** `PUT /api/storage/blob/:workspaceId/:algorithm/:hex/parts/:partNumber?uploadId=…`: one part, by signature. */
export const partRoute = new Hono<AppEnv>().put('/blob/:workspaceId/:algorithm/:hex/parts/:partNumber', async (c) => {
  const workspaceId = c.req.param('workspaceId');
  const hash = requireHash(`${c.req.param('algorithm')}:${c.req.param('hex')}`, { uploadable: true });
  const key = blobKey(workspaceId, hash);
  const partNumber = Number(c.req.param('partNumber'));
  const uploadId = c.req.query('uploadId') ?? '';
  const size = Number(c.req.query('size'));
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MULTIPART.maxParts) throw badRequest('Invalid part number', 'invalid_part');
  const outcome = await verify(
    await signingKeys(c),
    {
      method: 'PUT',
      workspaceId,
      key: partKey(key, uploadId, partNumber),
      expires: Number(c.req.query('exp')),
      size,
      hash: hash.canonical,
      disposition: 'inline',
      contentType: '',
    },
    c.req.query('kid') ?? '',
    c.req.query('sig') ?? '',
  );
  if (outcome === 'invalid') throw new ApiError(403, 'invalid_signature', 'This URL is not valid (tampered, or signed with a retired key)');
  if (outcome === 'expired') throw new ApiError(410, 'url_expired', 'This URL has expired; ask for new part URLs');
  if (Number(c.req.header('content-length')) !== size) throw badRequest(`Content-Length must be the signed part size ${size}`, 'length_mismatch');
  // The URL's signature covers the whole upload id, and we signed it only after checking its seal.
  const r2UploadId = parseUploadId(uploadId)?.r2UploadId;
  if (!r2UploadId) throw badRequest('Unknown upload; start the upload again with /multipart/create', 'invalid_upload');
  try {
    const part = await c.env.BLOBS.resumeMultipartUpload(stagingKey(key), r2UploadId).uploadPart(partNumber, c.req.raw.body!);
    return c.json({ partNumber: part.partNumber, etag: part.etag });
  } catch (err) {
    // An interrupted body or an unknown upload: the client retries this part with a fresh URL.
    throw r2Failure(
      c,
      'upload_part',
      err,
      'The part was not stored (interrupted, or the upload is gone); retry it with a fresh URL from /multipart/urls',
      'part_upload_failed',
    );
  }
});
