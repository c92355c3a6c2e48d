/**
 * Every call the SDK makes to the server goes through `HttpClient`: auth headers from the
 * adapter, a timeout, the error envelope turned into `Or3Error`, and one retry after a 401 once
 * the adapter has refreshed its credentials.
 *
 * `Or3Error.transient` is the one classification the loops use: transient failures (network,
 * timeout, 408/425/429/5xx) are retried with backoff; everything else (400 validation, 401 after
 * a refresh, 403, 404, 409, 413, 415, 422) is permanent and surfaced to the app.
 */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export class Or3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'Or3Error';
  }

  /** Worth retrying later: the network, a timeout, rate limiting or a server-side failure. */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 425 || this.status === 429 || this.status >= 500;
  }
}

/** How requests are authenticated; see auth.ts for the built-in adapters. */
export interface AuthAdapter {
  /** `include` for cookie sessions, `omit` for bearer tokens. */
  readonly credentials: RequestCredentials;
  /** Headers for the next request; may refresh first when the token is about to expire. */
  headers(): Promise<Record<string, string>>;
  /**
   * Called after a 401 with the headers that request carried: refresh once (shared by
   * concurrent callers, skipped when the credentials already changed since); true when a retry
   * may succeed.
   */
  recover(used: Record<string, string>): Promise<boolean>;
}

/** No credentials: for public endpoints and before sign-in. */
export const anonymous: AuthAdapter = { credentials: 'omit', headers: async () => ({}), recover: async () => false };

export interface RequestOptions {
  /** Send credentials and retry once after a refresh (default true). */
  auth?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Overrides the adapter's credentials mode (sign-in and refresh need cookies without sending a token). */
  credentials?: RequestCredentials;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export class HttpClient {
  constructor(
    readonly baseUrl: string,
    readonly fetchImpl: FetchLike,
    private readonly auth: () => AuthAdapter,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  url(path: string): string {
    return new URL(path, this.baseUrl).toString();
  }

  /** A JSON request to the API; resolves with the parsed body or throws `Or3Error`. */
  async json<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, body, options);
    return (await res.json()) as T;
  }

  async request(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<Response> {
    const useAuth = options.auth !== false;
    let used: Record<string, string> = {};
    const send = async () => {
      const adapter = useAuth ? this.auth() : anonymous;
      used = useAuth ? await adapter.headers() : {};
      const headers: Record<string, string> = { accept: 'application/json', ...used, ...options.headers };
      if (body !== undefined) headers['content-type'] = 'application/json';
      return this.fetch(
        this.url(path),
        { method, headers, credentials: options.credentials ?? adapter.credentials, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) },
        options,
      );
    };
    let res = await send();
    if (res.status === 401 && useAuth && (await this.auth().recover(used))) res = await send();
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  /** A raw fetch with the timeout and network errors mapped to `Or3Error` (status 0). */
  async fetch(url: string, init: RequestInit, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Response> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      return await this.fetchImpl(url, { ...init, signal });
    } catch (err) {
      if (options.signal?.aborted) throw new Or3Error(0, 'aborted', 'The request was cancelled');
      if (timeout.aborted) throw new Or3Error(0, 'timeout', `No answer within ${options.timeoutMs ?? this.timeoutMs} ms`);
      throw new Or3Error(0, 'network', err instanceof Error ? err.message : String(err));
    }
  }
}

/** Turns a failed response into an `Or3Error`, reading the `{ error, message }` envelope and Retry-After. */
export async function errorFrom(res: Response): Promise<Or3Error> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: unknown; message?: unknown };
    if (typeof body.error === 'string') code = body.error;
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // not JSON (a proxy's error page): keep the status text
  }
  const retryAfter = Number(res.headers.get('retry-after'));
  return new Or3Error(res.status, code, message, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
}
