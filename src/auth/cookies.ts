/**
 * The auth cookies, with OR3's names and paths: `or3_access` (Path=/, the access TTL) and
 * `or3_refresh` (Path=/api, the refresh TTL). HttpOnly, SameSite=Lax, and Secure everywhere
 * except plain-http local development (browsers drop Secure cookies on http://127.0.0.1).
 */
import type { Context } from 'hono';
import { deleteCookie, setCookie } from 'hono/cookie';
import type { AppEnv } from '../env';

export const ACCESS_COOKIE = 'or3_access';
export const REFRESH_COOKIE = 'or3_refresh';

function secure(c: Context<AppEnv>): boolean {
  return c.get('config').production || new URL(c.req.url).protocol === 'https:';
}

export function setAuthCookies(c: Context<AppEnv>, accessToken: string, refreshToken: string) {
  const { auth } = c.get('config');
  const base = { httpOnly: true, sameSite: 'Lax' as const, secure: secure(c) };
  setCookie(c, ACCESS_COOKIE, accessToken, { ...base, path: '/', maxAge: auth.accessTtlSeconds });
  setCookie(c, REFRESH_COOKIE, refreshToken, { ...base, path: '/api', maxAge: Math.floor(auth.refreshTtlSeconds) });
}

export function setAccessCookie(c: Context<AppEnv>, accessToken: string) {
  const { auth } = c.get('config');
  setCookie(c, ACCESS_COOKIE, accessToken, { httpOnly: true, sameSite: 'Lax', secure: secure(c), path: '/', maxAge: auth.accessTtlSeconds });
}

export function clearAuthCookies(c: Context<AppEnv>) {
  const base = { httpOnly: true, sameSite: 'Lax' as const, secure: secure(c) };
  deleteCookie(c, ACCESS_COOKIE, { ...base, path: '/' });
  deleteCookie(c, REFRESH_COOKIE, { ...base, path: '/api' });
}
