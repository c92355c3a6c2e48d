/**
 * Legacy opIds (docs/api.md "Legacy opIds"): ops written before opIds had to be RFC 4122 UUIDs
 * carry other text, which newer OR3 clients refuse in a pull page. Each such id maps to one
 * deterministic UUID (version 8, the variant 10xx, from SHA-256 of the old id), the same on every
 * run, so stored ids can be rewritten in place and an old op pushed again is still recognised.
 */
import { sha256 } from '@noble/hashes/sha2.js';

/**
 * An RFC 4122 (9562) UUID: version 1–8 and the 10xx variant, or the nil/max UUIDs; the rule
 * newer OR3 clients apply to every opId in a pull page.
 */
export const UUID =
  /^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$/;

export const isUuid = (opId: string) => UUID.test(opId);

const encoder = new TextEncoder();

/** The deterministic UUID that stands for a legacy (non-UUID) opId. */
export function legacyOpUuid(opId: string): string {
  const bytes = sha256(encoder.encode(`or3-edge:legacy-op-id:${opId}`)).slice(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8: custom
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10xx
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The opId as stored: itself when a UUID, else its deterministic UUID. */
export const storedOpId = (opId: string) => (isUuid(opId) ? opId : legacyOpUuid(opId));
