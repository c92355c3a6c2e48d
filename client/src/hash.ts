/**
 * SHA-256 of a file as the server names it (`sha256:<64 hex>`).
 *
 * WebCrypto is fast but only hashes a whole buffer, so files up to `WHOLE_FILE_LIMIT` are read
 * at once; larger ones are streamed through an incremental SHA-256 (@noble/hashes) a chunk at a
 * time, so hashing a 100 MB video never holds it in memory twice.
 */
import { sha256 } from '@noble/hashes/sha2.js';

export const WHOLE_FILE_LIMIT = 32 * 1024 * 1024;

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export async function hashBlob(blob: Blob, onProgress?: (bytesDone: number) => void): Promise<string> {
  if (blob.size <= WHOLE_FILE_LIMIT) {
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    onProgress?.(blob.size);
    return `sha256:${hex(new Uint8Array(digest))}`;
  }
  const hasher = sha256.create();
  const reader = blob.stream().getReader();
  let done = 0;
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) break;
    hasher.update(chunk.value);
    done += chunk.value.byteLength;
    onProgress?.(done);
  }
  return `sha256:${hex(hasher.digest())}`;
}
