/**
 * Worker-signed blob URLs (docs/storage.md). A URL is an HMAC-SHA256 over
 * `v1\nMETHOD\nworkspace\nkey\nexpires\nsize\nsha256\ndisposition\ncontent-type\nkid`, one field per line so no
 * two field lists share a string. It is bound to the method, the workspace, the exact object
 * key, the byte size, the hash and the expiry; `kid` names the key, so the previous secret keeps
 * working during rotation until URLs signed with it have expired. Verification recomputes the
 * MAC and compares in constant time.
 */
import { hmacSign, hmacVerify, keyring, type NamedKey } from '../crypto';

export const URL_LIMITS = {
  uploadMaxMs: 15 * 60 * 1000,
  downloadMaxMs: 60 * 60 * 1000,
  defaultMs: 10 * 60 * 1000,
} as const;

export interface SignedFields {
  method: 'PUT' | 'GET';
  workspaceId: string;
  key: string;
  /** Epoch ms. */
  expires: number;
  /** Bytes for uploads; 0 for downloads (any size). */
  size: number;
  hash: string;
  disposition: 'inline' | 'attachment';
  /** The MIME type an upload must carry (checked against the allow-list at presign); '' for downloads. */
  contentType: string;
}

export type UrlKey = NamedKey;

/** The URL-signing keys, current first; kid = first 12 hex chars of SHA-256("url-kid:" + secret). */
export const urlKeys = (current: string, previous?: string): Promise<UrlKey[]> => keyring('url-kid', 12, current, previous);

function canonical(f: SignedFields, kid: string): string {
  return ['v1', f.method, f.workspaceId, f.key, String(f.expires), String(f.size), f.hash, f.disposition, f.contentType, kid].join('\n');
}

/** The MAC key of a URL secret: its own purpose, so no other token's MAC is ever a valid URL signature. */
const macKey = (secret: string) => `storage-url:${secret}`;

export async function sign(keys: UrlKey[], fields: SignedFields): Promise<{ kid: string; sig: string }> {
  const { kid, secret } = keys[0]!;
  return { kid, sig: await hmacSign(macKey(secret), canonical(fields, kid)) };
}

export type VerifyOutcome = 'ok' | 'expired' | 'invalid';

/** Checks a signature made with any live key; expiry is checked after the MAC, so it cannot be probed. */
export async function verify(keys: UrlKey[], fields: SignedFields, kid: string, sig: string, now = Date.now()): Promise<VerifyOutcome> {
  const key = keys.find((k) => k.kid === kid);
  if (!key) return 'invalid';
  if (!(await hmacVerify(macKey(key.secret), canonical(fields, kid), sig))) return 'invalid';
  return fields.expires > now ? 'ok' : 'expired';
}

/** Clamps a requested lifetime to the maximum for the method (never longer, never below 1 s). */
export function clampExpiry(method: 'PUT' | 'GET', requestedMs: number | undefined, now = Date.now()): number {
  const max = method === 'PUT' ? URL_LIMITS.uploadMaxMs : URL_LIMITS.downloadMaxMs;
  const ms = Math.min(Math.max(requestedMs ?? URL_LIMITS.defaultMs, 1000), max);
  return now + ms;
}
