/**
 * JSON 404 for unknown routes and 405 (with `Allow`) for known paths called with the wrong
 * method. Call `installFallbacks(app)` after every router is mounted: it reads the routes
 * Hono registered, so new routes get correct 405s with no extra work.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../env';
import { errorBody, methodNotAllowed } from '../errors';

export function installFallbacks(app: Hono<AppEnv>) {
  const methodsByPath = new Map<string, Set<string>>();
  for (const route of app.routes) {
    if (route.method === 'ALL') continue; // middleware
    const methods = methodsByPath.get(route.path) ?? new Set<string>();
    methods.add(route.method);
    if (route.method === 'GET') methods.add('HEAD');
    methodsByPath.set(route.path, methods);
  }
  for (const [path, methods] of methodsByPath) {
    const allowed = [...methods].sort();
    app.all(path, (c) => {
      throw methodNotAllowed(c.req.method, allowed);
    });
  }
  app.notFound((c) => c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}`), 404));
}
