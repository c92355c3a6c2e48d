/**
 * Signing a delivery (docs/webhooks.md "Verifying a delivery"), two ways with one secret:
 * - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` where
 *   the MAC is HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the secret's bytes (the
 *   base64 after `whsec_`), one space-separated entry per secret still honoured;
 * - OR3's: `X-OR3-Event`, `X-OR3-Event-ID`, `X-OR3-Timestamp`, `X-OR3-Signature: sha256=<hex>`,
 *   HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret text itself, as OR3's receivers
 *   verify it (with the current secret).
 */
import { toHex } from '../crypto';

const encoder = new TextEncoder();
const PREFIX = 'whsec_';

/** A new signing secret: `whsec_` and 32 random bytes in base64 (the Standard Webhooks form). */
export function newSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return PREFIX + btoa(String.fromCharCode(...bytes));
}

/** The key bytes Standard Webhooks signs with. */
function standardKey(secret: string): Uint8Array {
  const b64 = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  return Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
}

async function hmac(key: Uint8Array, data: string): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, encoder.encode(data)));
}

/**
 * The headers of one attempt. `secrets[0]` is the current secret; any others are previous ones
 * still honoured after a rotation (they add `webhook-signature` entries only).
 */
export async function signatureHeaders(input: {
  eventId: string;
  event: string;
  body: string;
  secrets: string[];
  now: number;
}): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(input.now / 1000));
  const standard = await Promise.all(
    input.secrets.map(async (secret) => `v1,${btoa(String.fromCharCode(...(await hmac(standardKey(secret), `${input.eventId}.${timestamp}.${input.body}`))))}`),
  );
  const or3 = toHex(await hmac(encoder.encode(input.secrets[0]!), `${timestamp}.${input.body}`));
  return {
    'content-type': 'application/json',
    'user-agent': 'OR3-Webhooks/1.0 (or3-edge)',
    'webhook-id': input.eventId,
    'webhook-timestamp': timestamp,
    'webhook-signature': standard.join(' '),
    'x-or3-event': input.event,
    'x-or3-event-id': input.eventId,
    'x-or3-timestamp': timestamp,
    'x-or3-signature': `sha256=${or3}`,
  };
}
