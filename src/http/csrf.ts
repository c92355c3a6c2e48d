/**
 * CSRF guard for cookie-authenticated mutations.
 *
 * Browsers attach our cookies to cross-site requests, so a state-changing request that carries
 * an auth cookie must come from an allowed origin (or our own), and any body it has must be
 * JSON: a JSON content type cannot be sent cross-origin without a CORS preflight, which
 * `cors()` refuses for unknown origins. Bearer-only requests carry no ambient credential and
 * are not checked. Cloudflare Access's assertion header counts as ambient: Access adds it from
 * its own cookie. Hono's own `csrf()` only inspects form content types, so it is not enough.
 */
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import type { AppEnv } from '../env';
import { isAllowedOrigin } from './cors';
import { forbidden, unsupportedMediaType } from '../errors';

export const AUTH_COOKIES = ['or3_access', 'or3_refresh'] as const;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const type = value.split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

function hasBody(headers: Headers): boolean {
  const length = headers.get('content-length');
  if (length !== null) return Number(length) > 0;
  return headers.has('transfer-encoding');
}

/**
 * @param exempt paths authenticated by something other than cookies (signed storage URLs),
 *               which carry binary bodies by design.
 */
export function csrfGuard(exempt: (path: string) => boolean = () => false): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (SAFE_METHODS.has(c.req.method) || exempt(c.req.path)) return next();
    const cookies = getCookie(c);
    // Cloudflare Access adds its assertion header to every proxied request from its own cookie,
    // so for Access users that header is an ambient credential too.
    const ambient =
      AUTH_COOKIES.some((name) => cookies[name] !== undefined) ||
      cookies.CF_Authorization !== undefined ||
      c.req.header('cf-access-jwt-assertion') !== undefined;
    if (!ambient) return next();

    const origin = c.req.header('origin');
    if (origin !== undefined) {
      const sameOrigin = origin === new URL(c.req.url).origin;
      if (!sameOrigin && !isAllowedOrigin(c.get('config'), origin)) {
        throw forbidden(`Cross-site request from ${origin} refused`, 'csrf_rejected');
      }
    } else {
      // Every current browser sends Origin on cross-site POSTs; Sec-Fetch-Site covers the rest.
      const site = c.req.header('sec-fetch-site');
      if (site !== undefined && site !== 'same-origin' && site !== 'none') {
        throw forbidden('Cross-site request refused', 'csrf_rejected');
      }
    }
    if (hasBody(c.req.raw.headers) && !isJsonContentType(c.req.header('content-type'))) {
      throw unsupportedMediaType('Request bodies must be application/json');
    }
    return next();
  };
}
