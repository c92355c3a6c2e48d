/**
 * Setting headers on a finished response. Responses that came from elsewhere (a Durable
 * Object, R2, fetch) can have immutable headers, so they are copied first; WebSocket upgrade
 * responses (101) are left as they are, since copying would drop the socket.
 */
import type { Context } from 'hono';

export function mutateResponseHeaders(c: Context, mutate: (headers: Headers) => void) {
  if (c.res.status === 101) return;
  try {
    mutate(c.res.headers);
  } catch {
    c.res = new Response(c.res.body, c.res);
    mutate(c.res.headers);
  }
}
