/**
 * Optional Workers Analytics Engine data points (docs/operations.md "Metrics"): when the Worker
 * has an `ANALYTICS` dataset binding, every request writes one point — its route pattern (never a
 * concrete path: ids stay out), method, status and duration — which the platform aggregates; no
 * object or database is written on the request path. Without the binding this does nothing and
 * the deployment works as before. A failing write is dropped: analytics never fail a request.
 *
 *   blobs:   [route, method, status class ("2xx" …)]
 *   doubles: [status, duration ms, 1 if a server error (5xx) else 0]
 *   indexes: [route]  (the sampling key)
 */
import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import type { AppEnv } from '../env';

export function analytics(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const dataset = c.env.ANALYTICS;
    if (!dataset) return next();
    const started = performance.now();
    try {
      await next();
    } finally {
      try {
        // The pattern of the handler that answered ('/api/workspaces/:id/members'), or '*' for a fallback.
        const route = routePath(c, -1).slice(0, 96);
        const status = c.res.status;
        dataset.writeDataPoint({
          blobs: [route, c.req.method, `${Math.floor(status / 100)}xx`],
          doubles: [status, Math.round((performance.now() - started) * 100) / 100, status >= 500 ? 1 : 0],
          indexes: [route],
        });
      } catch {
        // Analytics are best effort.
      }
    }
  };
}
