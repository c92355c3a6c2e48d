/**
 * Every cryptographic helper of the Worker, in one place: hex and base64url, SHA-256,
 * HMAC-SHA256, constant-time comparison, random tokens, named keys for rotation, and sealed
 * `payload.mac` tokens. Key ids, refresh-token children, WebSocket tickets, snapshot page tokens,
 * signed blob URLs and multipart upload ids are all built from these, so their wire formats rest
 * on this one file; crypto.test.ts pins them with values made before it existed, because tokens,
 * stored hashes and URLs already issued must keep verifying (docs/auth.md, docs/storage.md,
 * docs/sync.md).
 *
 * Web Crypto only, plus workerd's `crypto.subtle.timingSafeEqual`.
 */

import { sha256Hex, toHex } from '../protocol/hashes';

// Hex and SHA-256 are the wire contract's too (content hashes, op fingerprints): defined there.
export { sha256Hex, toHex };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** base64url without padding (RFC 4648 §5); text is encoded as UTF-8 first. */
export function encodeBase64url(input: Uint8Array | string): string {
  const bytes = typeof input === 'string' ? encoder.encode(input) : input;
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of a base64url string (padding optional); throws when it is not base64 at all. */
export function decodeBase64url(text: string): Uint8Array {
  return Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (ch) => ch.charCodeAt(0));
}

/** `decodeBase64url`, read as UTF-8 text. */
export const decodeBase64urlText = (text: string): string => decoder.decode(decodeBase64url(text));

/** HMAC-SHA256 of `data` under `key`, base64url: the MAC behind every signed token and URL here. */
export async function hmacSign(key: string, data: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey('raw', encoder.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return encodeBase64url(new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, encoder.encode(data))));
}

/** Whether `mac` is `hmacSign(key, data)`, compared in constant time. */
export async function hmacVerify(key: string, data: string, mac: string): Promise<boolean> {
  return timingSafeEqual(mac, await hmacSign(key, data));
}

/** Constant-time comparison of two strings (digests, MACs); unequal lengths are simply unequal. */
export function timingSafeEqual(a: string, b: string): boolean {
  const ab = encoder.encode(a);
  const bb = encoder.encode(b);
  if (ab.byteLength !== bb.byteLength) return false;
  return crypto.subtle.timingSafeEqual(ab, bb);
}

/** `bytes` random bytes as base64url (32 → 43 characters): refresh secrets, invite tokens. */
export function randomToken(bytes = 32): string {
  return encodeBase64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** `bytes` random bytes as hex (32 → 64 characters): keys kept in our own storage. */
export function randomHex(bytes = 32): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A secret and the id it is known by in what it signed. */
export interface NamedKey {
  kid: string;
  secret: string;
}

const keyrings = new Map<string, Promise<NamedKey[]>>();

/**
 * The keys of one purpose, current first. Each is named by the first `kidLength` hex characters
 * of SHA-256(`<purpose>:<secret>`): stable per secret and revealing nothing useful, so rotating
 * a secret (the old value moved to `…_PREVIOUS`, docs/configuration.md) needs no other change,
 * and whatever either key signed verifies. Derived once per isolate per pair of secrets.
 */
export function keyring(purpose: string, kidLength: number, current: string, previous?: string): Promise<NamedKey[]> {
  const cacheKey = [purpose, kidLength, current, previous ?? ''].join('\u0000');
  let keys = keyrings.get(cacheKey);
  if (!keys) {
    const secrets = previous ? [current, previous] : [current];
    keys = Promise.all(secrets.map(async (secret) => ({ kid: (await sha256Hex(`${purpose}:${secret}`)).slice(0, kidLength), secret })));
    keyrings.set(cacheKey, keys);
  }
  return keys;
}

export type Unsealed = { ok: true; fields: unknown[] } | { ok: false; reason: 'invalid' | 'expired' };

/**
 * A sealed token: `<base64url(JSON array)>.<hmacSign(key, first part)>`. Whoever holds it can
 * read the fields (never seal a secret) but cannot change or make one without the key. The
 * fields are an array rather than an object because tokens travel in URLs: positions are short.
 */
export async function seal(key: string, fields: unknown[]): Promise<string> {
  const body = encodeBase64url(JSON.stringify(fields));
  return `${body}.${await hmacSign(key, body)}`;
}

/**
 * Opens a sealed token whose expiry (epoch ms) is `fields[expiryAt]`. The MAC is checked first,
 * so the expiry of a token we did not make cannot be probed: 'invalid' for anything not sealed
 * with this key, 'expired' for a genuine token at or past its time.
 */
export async function unseal(key: string, token: string, expiryAt: number, now = Date.now()): Promise<Unsealed> {
  const [body, mac, extra] = token.split('.');
  if (!body || !mac || extra !== undefined || !(await hmacVerify(key, body, mac))) return { ok: false, reason: 'invalid' };
  let fields: unknown;
  try {
    fields = JSON.parse(decodeBase64urlText(body));
  } catch {
    return { ok: false, reason: 'invalid' };
  }
  if (!Array.isArray(fields)) return { ok: false, reason: 'invalid' };
  const expiresAt = fields[expiryAt];
  if (typeof expiresAt !== 'number' || expiresAt <= now) return { ok: false, reason: 'expired' };
  return { ok: true, fields };
}

/** Streams an R2 object through SHA-256 and compares (for objects that did not pass R2's own check on the way in). */
export async function storedHashMatches(bucket: R2Bucket, key: string, hex: string): Promise<boolean> {
  const object = await bucket.get(key);
  if (!object) return false;
  const digest = new crypto.DigestStream('SHA-256');
  await object.body.pipeTo(digest);
  return toHex(new Uint8Array(await digest.digest)) === hex;
}
