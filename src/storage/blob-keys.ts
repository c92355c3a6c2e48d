/** Where a blob lives in R2 (hashes: protocol/hashes.ts; checking a stored object: crypto.ts `storedHashMatches`). */
import { badRequest } from '../errors';
import type { ParsedHash } from '../../protocol/hashes';

/** The R2 key of a blob: `ws/<workspaceId>/<algorithm>/<hex>`. Workspace ids never contain `/`. */
export function blobKey(workspaceId: string, hash: ParsedHash): string {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(workspaceId)) throw badRequest('Invalid workspace id', 'invalid_workspace');
  return `ws/${workspaceId}/${hash.algorithm}/${hash.hex}`;
}
