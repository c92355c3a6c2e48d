/**
 * Where blob bytes go, behind one small interface so another backend can be added without
 * touching the routes (which one signs uploads is chosen by `StorageDeps.uploadProvider`).
 *
 * - `r2` (default): URLs signed by the Worker (signing.ts) pointing at the Worker's own blob
 *   routes, which stream into and out of the R2 binding. R2 itself verifies the SHA-256 on put.
 * - `r2-s3`: direct-to-R2 S3 presigned URLs (aws4fetch), used when R2 API credentials are
 *   configured. Uploads bypass the Worker, so R2 does not check the hash; commit re-hashes the
 *   stored object before it counts.
 */
import { AwsClient } from 'aws4fetch';
import type { Config } from '../config';
import type { ParsedHash } from '../../protocol/hashes';
import { sign, urlKeys, type SignedFields } from './signing';

export interface PresignInput {
  workspaceId: string;
  hash: ParsedHash;
  key: string;
  mimeType: string;
  /** Upload size in bytes; 0 for downloads. */
  sizeBytes: number;
  expiresAt: number;
  disposition: 'inline' | 'attachment';
  /** The origin the Worker was reached at, for absolute URLs. */
  origin: string;
  config: Config;
  /** Downloads of a generic file: the user the URL is for (signed; the blob route re-checks membership and serves it inert). */
  genericFor?: string;
}

export interface PresignedRequest {
  url: string;
  method: 'PUT' | 'GET';
  headers: Record<string, string>;
}

export interface ObjectStorageProvider {
  readonly id: string;
  presignUpload(input: PresignInput): Promise<PresignedRequest>;
  presignDownload(input: PresignInput): Promise<PresignedRequest>;
}

/** The Worker's own blob route for a key: `/api/storage/blob/<workspace>/<algorithm>/<hex>`. */
export function blobPath(workspaceId: string, hash: ParsedHash) {
  return `/api/storage/blob/${workspaceId}/${hash.algorithm}/${hash.hex}`;
}

async function workerSigned(input: PresignInput, method: 'PUT' | 'GET'): Promise<PresignedRequest> {
  const fields: SignedFields = {
    method,
    workspaceId: input.workspaceId,
    key: input.key,
    expires: input.expiresAt,
    size: method === 'PUT' ? input.sizeBytes : 0,
    hash: input.hash.canonical,
    disposition: input.disposition,
    contentType: method === 'PUT' ? input.mimeType : input.genericFor ? `generic:${input.genericFor}` : '',
  };
  const { kid, sig } = await sign(await urlKeys(input.config.storage.urlSecret, input.config.storage.urlSecretPrevious), fields);
  const query = new URLSearchParams({ exp: String(fields.expires), disp: fields.disposition, kid, sig });
  if (method === 'PUT') {
    query.set('size', String(fields.size));
    query.set('type', fields.contentType);
  } else if (input.genericFor) query.set('g', input.genericFor);
  const headers: Record<string, string> = method === 'PUT' ? { 'content-type': input.mimeType } : {};
  return { url: `${input.origin}${blobPath(input.workspaceId, input.hash)}?${query}`, method, headers };
}

export const r2Provider: ObjectStorageProvider = {
  id: 'r2',
  presignUpload: (input) => workerSigned(input, 'PUT'),
  presignDownload: (input) => workerSigned(input, 'GET'),
};

/** Direct-to-R2 S3 presigned URLs. `endpoint` defaults to R2's; tests point it elsewhere. */
export function r2S3Provider(endpoint?: string): ObjectStorageProvider {
  const presign = async (input: PresignInput, method: 'PUT' | 'GET'): Promise<PresignedRequest> => {
    const s3 = input.config.storage.s3!;
    const client = new AwsClient({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, service: 's3', region: 'auto' });
    const base = endpoint ?? `https://${s3.accountId}.r2.cloudflarestorage.com`;
    const url = new URL(`${base}/${s3.bucketName}/${input.key}`);
    url.searchParams.set('X-Amz-Expires', String(Math.max(1, Math.round((input.expiresAt - Date.now()) / 1000))));
    if (method === 'GET') url.searchParams.set('response-content-disposition', input.disposition);
    // Signed headers become mandatory for the caller: the length and type cannot be changed.
    const headers: Record<string, string> = method === 'PUT' ? { 'content-length': String(input.sizeBytes), 'content-type': input.mimeType } : {};
    const signed = await client.sign(new Request(url, { method, headers }), { aws: { signQuery: true, allHeaders: true } });
    return { url: signed.url, method, headers: method === 'PUT' ? { 'content-type': input.mimeType } : {} };
  };
  return { id: 'r2-s3', presignUpload: (i) => presign(i, 'PUT'), presignDownload: (i) => presign(i, 'GET') };
}
