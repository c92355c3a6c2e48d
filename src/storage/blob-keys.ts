/** Where a blob lives in R2, and a check of a stored object against its hash (hashes: protocol/hashes.ts). */
import { toHex } from '../crypto';
import { badRequest } from '../errors';
import type { ParsedHash } from '../../protocol/hashes';

/** The R2 key of a blob: `ws/<workspaceId>/<algorithm>/<hex>`. Workspace ids never contain `/`. */
export function blobKey(workspaceId: string, hash: ParsedHash): string {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(workspaceId)) throw badRequest('Invalid workspace id', 'invalid_workspace');
  return `ws/${workspaceId}/${hash.algorithm}/${hash.hex}`;
}

/** Streams an R2 object through SHA-256 and compares (for objects that did not pass R2's own check on the way in). */
export async function storedHashMatches(bucket: R2Bucket, key: string, hex: string): Promise<boolean> {
  const object = await bucket.get(key);
  if (!object) return false;
  const digest = new crypto.DigestStream('SHA-256');
  await object.body.pipeTo(digest);
  return toHex(new Uint8Array(await digest.digest)) === hex;
}
