/**
 * Sync, storage, auth and workspace answers are per-user and often secret: no cache may keep
 * them. Health is the one public, cacheable-for-a-moment route, so it opts out.
 */
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { mutateResponseHeaders } from './headers';

export function noStore(except: (path: string) => boolean): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    if (except(c.req.path)) return;
    mutateResponseHeaders(c, (h) => {
      h.set('Cache-Control', 'no-store');
      h.set('Pragma', 'no-cache');
    });
  };
}
