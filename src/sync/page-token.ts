/**
 * Snapshot page tokens: the position of the next page plus the snapshot's id, high watermark
 * and expiry, HMAC-signed with a key kept in the workspace's own database. Stateless for the
 * object, unforgeable for clients, and they expire (410) so a snapshot cannot be paged forever.
 */
import { base64url, digestsEqual, hmacBase64url } from '../auth/tokens';

export const SNAPSHOT_TTL_MS = 15 * 60 * 1000;

export interface PageState {
  snapshotId: string;
  highWatermark: number;
  after: [string, string];
  expiresAt: number;
}

const encoder = new TextEncoder();

const fromB64url = (text: string) => atob(text.replace(/-/g, '+').replace(/_/g, '/'));

export async function signPageToken(key: string, state: PageState): Promise<string> {
  const body = base64url(encoder.encode(JSON.stringify([state.snapshotId, state.highWatermark, state.after[0], state.after[1], state.expiresAt])));
  return `${body}.${await hmacBase64url(key, body)}`;
}

export type PageTokenResult = { ok: true; state: PageState } | { ok: false; reason: 'invalid' | 'expired' };

export async function readPageToken(key: string, token: string, now = Date.now()): Promise<PageTokenResult> {
  const [body, mac, extra] = token.split('.');
  if (!body || !mac || extra !== undefined) return { ok: false, reason: 'invalid' };
  if (!digestsEqual(mac, await hmacBase64url(key, body))) return { ok: false, reason: 'invalid' };
  try {
    const [snapshotId, highWatermark, table, pk, expiresAt] = JSON.parse(new TextDecoder().decode(Uint8Array.from(fromB64url(body), (ch) => ch.charCodeAt(0))));
    if (typeof expiresAt !== 'number' || expiresAt <= now) return { ok: false, reason: 'expired' };
    return { ok: true, state: { snapshotId, highWatermark, after: [table, pk], expiresAt } };
  } catch {
    return { ok: false, reason: 'invalid' };
  }
}
