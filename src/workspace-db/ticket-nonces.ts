/**
 * The used WebSocket-ticket nonces of this workspace (table `ws_tickets`): a ticket opens one
 * socket, once (docs/api.md, `/api/sync/ws-ticket`). Kept past their expiry by a margin, so a ticket
 * cannot be replayed at the edge of it; expired entries go as new ones come in.
 */

/** Used ticket nonces are kept this long past their expiry. */
const TICKET_NONCE_MARGIN_MS = 5 * 60 * 1000;

/** Records a ticket's nonce; the reason it is refused, or null. */
export function claimTicket(storage: DurableObjectStorage, nonce: string, expiresAt: number, now = Date.now()): string | null {
  // Checked here too: the Worker's clock reading is older than ours.
  if (!Number.isFinite(expiresAt) || expiresAt <= now) return 'Ticket expired';
  const sql = storage.sql;
  const fresh = storage.transactionSync(() => {
    sql.exec('DELETE FROM ws_tickets WHERE expires_at < ?', now - TICKET_NONCE_MARGIN_MS);
    return sql.exec('INSERT INTO ws_tickets (nonce, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING nonce', nonce, expiresAt).toArray().length > 0;
  });
  return fresh ? null : 'Ticket already used';
}
