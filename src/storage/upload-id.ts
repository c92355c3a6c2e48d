/**
 * The multipart upload id a client holds: R2's own upload id sealed together with what the
 * client declared at create (total size, part size, MIME type), under the URL-signing key.
 *
 * Why: `/urls` and `/complete` used to take the size from the request, so an upload created
 * within the limits could be resumed at any size. Now they read the declared size from this id,
 * which only the server can make, and refuse anything else; the policy is checked against the
 * declared size at every step. Stateless (nothing to store or clean up), and it lasts as long as
 * R2 keeps an unfinished upload (7 days), after which there is nothing left to resume anyway.
 *
 * Layout: `m1.<size>.<partSize>.<expires>.<kid>.<sig>.<base64url MIME>.<R2 upload id>`; the R2
 * id comes last because its alphabet is R2's business.
 */
import { decodeBase64urlText, encodeBase64url } from '../crypto';
import { sign, verify, type UrlKey } from './signing';

/** R2 aborts unfinished multipart uploads after 7 days. */
export const UPLOAD_ID_LIFETIME_MS = 7 * 24 * 3600 * 1000;

export interface DeclaredUpload {
  r2UploadId: string;
  sizeBytes: number;
  partSizeBytes: number;
  mimeType: string;
  expires: number;
}

interface Scope {
  workspaceId: string;
  key: string;
  hash: string;
}

/** The signed fields: the blob (workspace, key, hash) and everything declared at create. */
function fields(scope: Scope, d: DeclaredUpload) {
  return {
    method: 'PUT' as const,
    workspaceId: scope.workspaceId,
    key: `${scope.key}#multipart=${d.r2UploadId}#part-size=${d.partSizeBytes}`,
    expires: d.expires,
    size: d.sizeBytes,
    hash: scope.hash,
    disposition: 'inline' as const,
    contentType: d.mimeType,
  };
}

export async function sealUploadId(keys: UrlKey[], scope: Scope, declared: Omit<DeclaredUpload, 'expires'>, now = Date.now()): Promise<string> {
  const d = { ...declared, expires: now + UPLOAD_ID_LIFETIME_MS };
  const { kid, sig } = await sign(keys, fields(scope, d));
  const mime = encodeBase64url(d.mimeType);
  return ['m1', d.sizeBytes, d.partSizeBytes, d.expires, kid, sig, mime, d.r2UploadId].join('.');
}

/** Splits an id without checking its seal (see `openUploadId`); null when it is not one of ours. */
export function parseUploadId(id: string): (DeclaredUpload & { kid: string; sig: string }) | null {
  const match = /^m1\.(\d{1,16})\.(\d{1,10})\.(\d{1,16})\.([0-9a-f]{1,64})\.([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{1,400})\.(.+)$/s.exec(id);
  if (!match) return null;
  // MIME types are ASCII (checked at create), so UTF-8 and the former byte-per-character encoding agree.
  let mimeType: string;
  try {
    mimeType = decodeBase64urlText(match[6]!);
  } catch {
    return null;
  }
  return {
    sizeBytes: Number(match[1]),
    partSizeBytes: Number(match[2]),
    expires: Number(match[3]),
    kid: match[4]!,
    sig: match[5]!,
    mimeType,
    r2UploadId: match[7]!,
  };
}

/** The declared upload if the id was sealed by us for this blob; 'expired' past R2's lifetime. */
export async function openUploadId(keys: UrlKey[], scope: Scope, id: string, now = Date.now()): Promise<DeclaredUpload | 'invalid' | 'expired'> {
  const parsed = parseUploadId(id);
  if (!parsed) return 'invalid';
  const { kid, sig, ...declared } = parsed;
  const outcome = await verify(keys, fields(scope, declared), kid, sig, now);
  return outcome === 'ok' ? declared : outcome;
}
