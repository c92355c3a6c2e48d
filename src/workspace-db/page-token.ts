/**
 * Snapshot page tokens: the position of the next page plus the snapshot's id, high watermark
 * and expiry, sealed (src/crypto.ts) with a key kept in the workspace's own database. Stateless
 * for the object, unforgeable for clients, and they expire (410) so a snapshot cannot be paged
 * forever (docs/sync.md).
 */
import { seal, unseal } from '../crypto';

export const SNAPSHOT_TTL_MS = 15 * 60 * 1000;

export interface PageState {
  snapshotId: string;
  highWatermark: number;
  after: [string, string];
  expiresAt: number;
}

/** Where the expiry sits in a token's fields. */
const EXPIRES_AT = 4;

export function signPageToken(key: string, state: PageState): Promise<string> {
  return seal(key, [state.snapshotId, state.highWatermark, state.after[0], state.after[1], state.expiresAt]);
}

export type PageTokenResult = { ok: true; state: PageState } | { ok: false; reason: 'invalid' | 'expired' };

export async function readPageToken(key: string, token: string, now = Date.now()): Promise<PageTokenResult> {
  const opened = await unseal(key, token, EXPIRES_AT, now);
  if (!opened.ok) return opened;
  const [snapshotId, highWatermark, table, pk, expiresAt] = opened.fields as [string, number, string, string, number];
  return { ok: true, state: { snapshotId, highWatermark, after: [table, pk], expiresAt } };
}
