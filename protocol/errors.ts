/**
 * Refusals as the wire contract states them (docs/api.md "Conventions"): an HTTP status and a
 * stable machine code with a human message. The payload rules (rules.ts, hashes.ts) throw
 * `WireError`; the Worker answers it, like its own `ApiError` (a subclass, src/errors.ts), with
 * the envelope `{ "error": code, "message": … }`, and the socket with an `error` message
 * (socket.ts). `Failure` is the same refusal returned as a value, where errors cross an RPC
 * boundary (a thrown error loses its type there).
 */
export class WireError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'WireError';
  }
}

/** 400: a request the contract's rules refuse. */
export const invalid = (message: string, code = 'bad_request') => new WireError(400, code, message);
/** 413: a request larger than the contract allows. */
export const tooLarge = (message: string, code = 'payload_too_large') => new WireError(413, code, message);

/**
 * An expected failure, returned rather than thrown where errors cross an RPC boundary: the
 * workspace object's answers use it, and the Worker's `fromFailure` is the one mapping to HTTP.
 */
export type Failure = {
  ok: false;
  status: 400 | 401 | 403 | 404 | 409 | 410 | 413 | 422 | 426 | 429 | 501 | 503;
  code: string;
  message: string;
  retryAfter?: number;
  /** Extra envelope fields (a capability gate's `requiredCapability`). */
  extra?: Record<string, string>;
};
