/**
 * Typed errors with stable machine codes. Any module may throw an `ApiError` (or, in the
 * contract's rules, its base `WireError`: protocol/errors.ts); the single
 * `onError` handler (see `handleError`) turns it into the wire envelope (docs/architecture.md "The request path"):
 * `{ "error": "<machine code>", "message": "<human text>" }`.
 *
 * Anything that is not a `WireError` is a bug: it is logged with its stack (outside
 * production) and answered with a generic 500 that never carries internals.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AppEnv } from './env';
import { WireError, type Failure } from '../protocol/errors';

export { WireError, type Failure };

/** A `WireError` with the Worker's extras: response headers and envelope fields. */
export class ApiError extends WireError {
  declare readonly status: ContentfulStatusCode;
  readonly headers: Record<string, string>;
  /** Extra envelope fields, for errors whose clients read more than the code (OR3's 426 `requiredCapability`). */
  readonly extra: Record<string, unknown>;

  constructor(status: ContentfulStatusCode, code: string, message: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
    super(status, code, message);
    this.name = 'ApiError';
    this.headers = headers;
    this.extra = extra;
  }
}

export const badRequest = (message: string, code = 'bad_request') => new ApiError(400, code, message);
export const unauthorized = (message = 'Authentication required', code = 'unauthorized') => new ApiError(401, code, message);
export const forbidden = (message = 'Forbidden', code = 'forbidden') => new ApiError(403, code, message);
export const notFound = (message = 'Not found', code = 'not_found') => new ApiError(404, code, message);
export const methodNotAllowed = (method: string, allowed: string[]) =>
  new ApiError(405, 'method_not_allowed', `Method ${method} is not allowed here; use ${allowed.join(', ')}`, {
    Allow: allowed.join(', '),
  });
export const conflict = (message: string, code = 'conflict') => new ApiError(409, code, message);
export const gone = (message: string, code = 'gone') => new ApiError(410, code, message);
export const payloadTooLarge = (message: string, code = 'payload_too_large') => new ApiError(413, code, message);
export const unsupportedMediaType = (message: string, code = 'unsupported_media_type') => new ApiError(415, code, message);
export const unprocessable = (message: string, code = 'integrity_error') => new ApiError(422, code, message);
export const rateLimited = (retryAfterSeconds: number) => {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return new ApiError(429, 'rate_limited', `Rate limit exceeded. Retry after ${seconds}s`, {
    'Retry-After': String(seconds),
  });
};
export const misconfigured = (message: string) => new ApiError(503, 'misconfigured', message);

/** The HTTP error for a `Failure`. */
export function fromFailure(failure: Omit<Failure, 'ok'>): ApiError {
  return new ApiError(failure.status, failure.code, failure.message, failure.retryAfter ? { 'Retry-After': String(failure.retryAfter) } : {}, failure.extra);
}

/** A `Failure` (or any status, e.g. 426) as a JSON envelope response, for code outside Hono (the object's fetch). */
export function failureResponse(failure: { status: number; code: string; message: string; retryAfter?: number }): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=UTF-8' };
  if (failure.retryAfter) headers['retry-after'] = String(failure.retryAfter);
  return new Response(JSON.stringify(errorBody(failure.code, failure.message)), { status: failure.status, headers });
}

/** The wire envelope for an error. */
export function errorBody(code: string, message: string) {
  return { error: code, message };
}

/** The app's `onError`: maps errors to the envelope and records them for the request log. */
export function handleError(err: Error, c: Context<AppEnv>) {
  if (err instanceof WireError) {
    // An ApiError, or a refusal of the contract's rules (protocol/), which carries no extras.
    const { headers, extra } = err instanceof ApiError ? err : { headers: {}, extra: {} };
    for (const [name, value] of Object.entries(headers)) c.header(name, value);
    if (err.status >= 500) c.get('log')?.fail(err);
    return c.json({ ...extra, ...errorBody(err.code, err.message) }, err.status as ContentfulStatusCode);
  }
  if (err instanceof HTTPException) {
    // Thrown by Hono itself or a middleware from it: its status stands, in our envelope.
    if (err.status >= 500) c.get('log')?.fail(err);
    const status = err.status as ContentfulStatusCode;
    return c.json(errorBody(status >= 500 ? 'internal_error' : 'http_error', err.message || 'Request failed'), status);
  }
  c.get('log')?.fail(err);
  return c.json(errorBody('internal_error', 'Internal server error'), 500);
}
