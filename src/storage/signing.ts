/**
 * Worker-signed blob URLs (SECURITY.md §5). A URL is an HMAC-SHA256 over
 * `v1\nMETHOD\nworkspace\nkey\nexpires\nsize\nsha256\ndisposition\ncontent-type\nkid`, one field per line so no
 * two field lists share a string. It is bound to the method, the workspace, the exact object
 * key, the byte size, the hash and the expiry; `kid` names the key, so the previous secret keeps
 * working during rotation until URLs signed with it have expired. Verification recomputes the
 * MAC and compares in constant time.
 */
import { digestsEqual, hmacBase64url, sha256Hex } from '../auth/tokens';

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

export interface UrlKey {
  kid: string;
  secret: string;
}

const keyCache = new Map<string, Promise<UrlKey[]>>();

/** The URL-signing keys (current first); `kid` is derived from each secret. */
export function urlKeys(current: string, previous?: string): Promise<UrlKey[]> {
  const cacheKey = `${current}\u0000${previous ?? ''}`;
  let keys = keyCache.get(cacheKey);
  if (!keys) {
    keys = Promise.all((previous ? [current, previous] : [current]).map(async (secret) => ({ kid: (await sha256Hex(`url-kid:${secret}`)).slice(0, 12), secret })));
    keyCache.set(cacheKey, keys);
  }
  return keys;
}

function canonical(f: SignedFields, kid: string): string {
  return ['v1', f.method, f.workspaceId, f.key, String(f.expires), String(f.size), f.hash, f.disposition, f.contentType, kid].join('\n');
}

const mac = (secret: string, text: string) => hmacBase64url(`storage-url:${secret}`, text);

export async function sign(keys: UrlKey[], fields: SignedFields): Promise<{ kid: string; sig: string }> {
  const { kid, secret } = keys[0]!;
  return { kid, sig: await mac(secret, canonical(fields, kid)) };
}

export type VerifyOutcome = 'ok' | 'expired' | 'invalid';

/** Checks a signature made with any live key; expiry is checked after the MAC, so it cannot be probed. */
export async function verify(keys: UrlKey[], fields: SignedFields, kid: string, sig: string, now = Date.now()): Promise<VerifyOutcome> {
  const key = keys.find((k) => k.kid === kid);
  if (!key) return 'invalid';
  if (!digestsEqual(sig, await mac(key.secret, canonical(fields, kid)))) return 'invalid';
  return fields.expires > now ? 'ok' : 'expired';
}

/** Clamps a requested lifetime to the maximum for the method (never longer, never below 1 s). */
export function clampExpiry(method: 'PUT' | 'GET', requestedMs: number | undefined, now = Date.now()): number {
  const max = method === 'PUT' ? URL_LIMITS.uploadMaxMs : URL_LIMITS.downloadMaxMs;
  const ms = Math.min(Math.max(requestedMs ?? URL_LIMITS.defaultMs, 1000), max);
  return now + ms;
}
