/**
 * Generic files on the storage routes (docs/api.md "Capabilities", "Downloads"): the file-kind
 * gate (426 for clients that do not declare `file_kind_capability`) and the inert way a generic
 * file is served — always an attachment, `application/octet-stream`, never sniffed, never
 * cached, with a filename that cannot break the header.
 */
import { ApiError, fromFailure } from '../errors';
import { fileKindRequired } from '../../protocol/capabilities';

/** Throws OR3's 426 when a generic file crosses the boundary for a client without the capability. */
export function requireFileKind(generic: boolean, declared: boolean): void {
  if (generic && !declared) throw fromFailure(fileKindRequired());
}

/** A filename safe inside `filename="…"`: no quotes, backslashes, control or path characters; at most 200 characters. */
export function sanitizeFilename(name: string | null | undefined, fallback: string): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base
    .replace(/[\u0000-\u001f\u007f"\\;]/g, '_')
    .replace(/^\.+/, '')
    .trim()
    .slice(0, 200);
  return clean || fallback;
}

/** RFC 5987 encoding of a filename, for `filename*=` (non-ASCII names survive). */
function encodeRfc5987(name: string): string {
  return encodeURIComponent(name).replace(/['()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The headers that make a generic file inert whatever it contains. */
export function genericFileHeaders(headers: Headers, name: string | null | undefined, fallback: string): void {
  const filename = sanitizeFilename(name, fallback);
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_');
  headers.set('content-type', 'application/octet-stream');
  headers.set('content-disposition', `attachment; filename="${ascii}"; filename*=UTF-8''${encodeRfc5987(filename)}`);
  headers.set('x-content-type-options', 'nosniff');
  headers.set('cache-control', 'private, no-store');
  headers.set('content-security-policy', "sandbox; default-src 'none'");
}

/** 403 for a signed generic-file URL whose user no longer belongs to the workspace. */
export const notAMember = () => new ApiError(403, 'not_member', 'You are no longer a member of this workspace');
