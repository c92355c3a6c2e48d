/**
 * Refresh tokens (docs/auth.md "Tokens"): opaque `<id>.<secret>.<userId>`; only SHA-256(secret)
 * is stored, in the user's object, which the trailing user id names, so a refresh goes straight
 * to that object with no lookup. Tokens issued before sessions moved into user objects are
 * `<id>.<secret>`; their owner is read from D1 once (legacy.ts). A rotated token's child secret
 * is derived from the parent's secret with an HMAC, so a refresh retried inside the grace window
 * (two tabs, a lost response) gets the very same child without the server keeping any plaintext.
 */
import { hmacSign, sha256Hex } from '../crypto';

/** User ids are UUIDs, or imported ids of 1–128 letters, digits, - and _ (never a dot). */
const TOKEN = /^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})(?:\.([A-Za-z0-9_-]{1,128}))?$/;

/** Splits a refresh token; `userId` is absent for a token issued before the move. Null for anything malformed. */
export function parseRefreshToken(token: string): { id: string; secret: string; userId?: string } | null {
  const match = TOKEN.exec(token);
  if (!match) return null;
  return match[3] ? { id: match[1]!, secret: match[2]!, userId: match[3] } : { id: match[1]!, secret: match[2]! };
}

export function formatRefreshToken(userId: string, tokenId: string, secret: string): string {
  return `${tokenId}.${secret}.${userId}`;
}

/** The child refresh secret for a parent: HMAC(server key, parent id + parent secret). */
export function childSecret(serverKey: string, parentId: string, parentSecret: string): Promise<string> {
  return hmacSign(`refresh-child:${serverKey}`, `${parentId}.${parentSecret}`);
}

/**
 * The child's id, derived from the parent's: 32 hex chars of SHA-256("child-id:" + parent id),
 * formatted as a UUID because the refresh token grammar expects one.
 */
export async function childTokenId(parentId: string): Promise<string> {
  const hex = await sha256Hex(`child-id:${parentId}`);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
