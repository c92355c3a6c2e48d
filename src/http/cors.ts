/**
 * CORS for credentialed requests from OR3_ALLOWED_ORIGINS.
 *
 * The allowed origin is echoed exactly (never `*`, never a reflected unknown origin, never
 * `null`), with `Vary: Origin` so caches keep per-origin answers apart. Preflights from an
 * allowed origin get 204 and `Access-Control-Max-Age: 3600`; preflights from any other
 * origin get 403 with no CORS headers, so the browser blocks the real request.
 */
import type { MiddlewareHandler } from 'hono';
import type { Config } from '../config';
import type { AppEnv } from '../env';
import { errorBody } from '../errors';
import { mutateResponseHeaders } from './headers';

const ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
const ALLOW_HEADERS = [
  'content-type',
  'authorization',
  'x-request-id',
  'x-or3-cloud-intent',
  'x-or3-token-transport',
  'x-or3-admin-intent',
  'cf-access-jwt-assertion',
].join(', ');
const EXPOSE_HEADERS = 'x-request-id, retry-after, content-length, content-range, etag';

/** True when `origin` may make credentialed requests. Same-origin requests never need this. */
export function isAllowedOrigin(config: Config, origin: string): boolean {
  if (origin === 'null') return false;
  return config.allowAnyOrigin || config.allowedOrigins.includes(origin);
}

export function cors(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const origin = c.req.header('origin');
    const config = c.get('config');
    const allowed = origin !== undefined && isAllowedOrigin(config, origin);
    const preflight = c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined;

    if (preflight) {
      if (!allowed) {
        // The browser shows its user only "Failed to fetch": the request's log line (and, in
        // development, the body) names the origin and the variable that would let it in.
        const hint = `add ${origin ?? 'the origin'} to OR3_ALLOWED_ORIGINS (comma-separated exact origins; docs/configuration.md)`;
        c.get('log').set({ corsRefusedOrigin: origin ?? '(none)', hint });
        const message = `Origin ${origin ?? '(none)'} is not allowed` + (config.production ? '' : `: ${hint}`);
        return c.json(errorBody('cors_denied', message), 403);
      }
      return new Response(null, {
        status: 204,
        headers: {
          'Access-Control-Allow-Origin': origin,
          'Access-Control-Allow-Credentials': 'true',
          'Access-Control-Allow-Methods': ALLOW_METHODS,
          'Access-Control-Allow-Headers': ALLOW_HEADERS,
          'Access-Control-Max-Age': '3600',
          Vary: 'Origin',
        },
      });
    }

    await next();
    mutateResponseHeaders(c, (h) => {
      h.append('Vary', 'Origin');
      if (allowed) {
        h.set('Access-Control-Allow-Origin', origin);
        h.set('Access-Control-Allow-Credentials', 'true');
        h.set('Access-Control-Expose-Headers', EXPOSE_HEADERS);
      }
    });
  };
}
