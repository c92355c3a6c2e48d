/**
 * WebSocket tickets: for clients whose WebSocket API cannot set headers, `POST
 * /api/sync/ws-ticket` hands out a ticket valid for 60 s that `GET /api/sync/ws?ticket=` accepts
 * once (docs/sync.md "Realtime"). A ticket is sealed (src/crypto.ts) over the user, the workspace,
 * a fresh nonce, the expiry and the session; the workspace's object records the nonce, so a
 * ticket works once, and no long-lived token ever goes in a URL.
 */
import { seal, unseal } from '../crypto';

export const WS_TICKET_TTL_MS = 60_000;

/** Where the expiry sits in a ticket's fields. */
const EXPIRES_AT = 3;

/** Tickets have their own MAC key, derived from the JWT secret. */
const macKey = (secret: string) => `ws-ticket:${secret}`;

export interface Ticket {
  userId: string;
  nonce: string;
  expiresAt: number;
  sessionId: string | null;
}

export async function issueTicket(secret: string, userId: string, workspaceId: string, sessionId: string | null, now = Date.now()) {
  const expiresAt = now + WS_TICKET_TTL_MS;
  return { ticket: await seal(macKey(secret), [userId, workspaceId, crypto.randomUUID(), expiresAt, sessionId]), expiresAt };
}

/** The ticket's fields if we sealed it for this workspace and it has not expired; null otherwise. */
export async function readTicket(secret: string, ticket: string, workspaceId: string, now = Date.now()): Promise<Ticket | null> {
  const opened = await unseal(macKey(secret), ticket, EXPIRES_AT, now);
  if (!opened.ok) return null;
  const [userId, ticketWorkspace, nonce, expiresAt, sessionId] = opened.fields;
  if (ticketWorkspace !== workspaceId) return null;
  return { userId: String(userId), nonce: String(nonce), expiresAt: expiresAt as number, sessionId: typeof sessionId === 'string' ? sessionId : null };
}
