/**
 * Auth adapters: how the SDK authenticates, independent of the rest of it.
 *
 * - `BasicAuth`: the server's built-in email/password. Same-origin apps use the HttpOnly cookie
 *   session (nothing for scripts to steal); cross-origin apps and Node use bearer tokens
 *   (`x-or3-token-transport: bearer`), kept in a `TokenStore` and refreshed a minute before they
 *   expire. Refresh is single-flight: ten concurrent calls that need it cause one refresh.
 * - `ExternalTokenAuth`: any identity provider whose JWT the server trusts (Clerk, Cloudflare
 *   Access, another OIDC issuer): the app passes `getToken()`, e.g. Clerk's `session.getToken`.
 */
import { HttpClient, Or3Error, type AuthAdapter } from './http.js';

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
}

/** Where bearer tokens live between page loads. The SDK's default keeps them in IndexedDB. */
export interface TokenStore {
  load(): Promise<Tokens | null>;
  save(tokens: Tokens | null): Promise<void>;
}

export const memoryTokenStore = (): TokenStore => {
  let tokens: Tokens | null = null;
  return { load: async () => tokens, save: async (t) => void (tokens = t) };
};

/** Refresh this long before the access token expires, so requests rarely meet a 401. */
export const REFRESH_MARGIN_MS = 60_000;

type BearerBody = { ok: boolean; accessToken?: string; refreshToken?: string; expiresAt?: string };

export class BasicAuth implements AuthAdapter {
  readonly credentials: RequestCredentials;
  #tokens: Tokens | null = null;
  #loaded: Promise<void> | null = null;
  #refreshing: Promise<boolean> | null = null;
  #http!: HttpClient;

  /** `onSignedOut`: the session is gone for good (a refresh was refused); the client emits `signedOut`. */
  constructor(
    readonly transport: 'cookie' | 'bearer',
    private readonly store: TokenStore = memoryTokenStore(),
    private readonly onSignedOut: () => void = () => {},
  ) {
    this.credentials = transport === 'cookie' ? 'include' : 'omit';
  }

  /** Wired by the client: the adapter talks to the same server through the same fetch. */
  attach(http: HttpClient) {
    this.#http = http;
  }

  #transportHeaders(): Record<string, string> {
    return this.transport === 'bearer' ? { 'x-or3-token-transport': 'bearer' } : {};
  }

  async #current(): Promise<Tokens | null> {
    this.#loaded ??= this.store.load().then((t) => void (this.#tokens = t));
    await this.#loaded;
    return this.#tokens;
  }

  async #accept(body: BearerBody) {
    if (this.transport !== 'bearer') return;
    if (!body.accessToken || !body.refreshToken || !body.expiresAt) throw new Or3Error(502, 'bad_response', 'The server did not return bearer tokens');
    this.#tokens = { accessToken: body.accessToken, refreshToken: body.refreshToken, expiresAt: Date.parse(body.expiresAt) };
    await this.store.save(this.#tokens);
  }

  async signIn(email: string, password: string): Promise<void> {
    await this.#current();
    const body = await this.#http.json<BearerBody>(
      'POST',
      '/api/basic-auth/sign-in',
      { email, password },
      { auth: false, credentials: this.credentials, headers: this.#transportHeaders() },
    );
    await this.#accept(body);
  }

  async register(input: { email: string; password: string; displayName?: string; inviteToken?: string }): Promise<void> {
    await this.#http.json('POST', '/api/basic-auth/register', { ...input, confirmPassword: input.password }, { auth: false, credentials: this.credentials });
    await this.signIn(input.email, input.password);
  }

  async signOut(): Promise<void> {
    try {
      const tokens = await this.#current();
      await this.#http.request('POST', '/api/basic-auth/sign-out', tokens ? { refreshToken: tokens.refreshToken } : undefined, { auth: true });
    } catch {
      // Signing out locally must work offline too; the server session then expires on its own.
    }
    this.#tokens = null;
    await this.store.save(null);
  }

  async signedIn(): Promise<boolean> {
    return this.transport === 'cookie' || (await this.#current()) !== null;
  }

  async headers(): Promise<Record<string, string>> {
    if (this.transport === 'cookie') return {};
    let tokens = await this.#current();
    if (tokens && tokens.expiresAt - Date.now() < REFRESH_MARGIN_MS) {
      await this.refresh();
      tokens = this.#tokens;
    }
    return tokens ? { authorization: `Bearer ${tokens.accessToken}` } : {};
  }

  async recover(used: Record<string, string>): Promise<boolean> {
    const tokens = await this.#current();
    // Another caller refreshed while this request was in flight: just retry with the new token.
    if (this.transport === 'bearer' && tokens && used.authorization !== `Bearer ${tokens.accessToken}`) return true;
    return this.refresh();
  }

  /** Rotates the refresh token; concurrent callers share one request. False when signed out. */
  refresh(): Promise<boolean> {
    this.#refreshing ??= this.#refreshOnce().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  /** Other tabs share the token store: one refresh at a time across them (Web Locks where available). */
  async #refreshOnce(): Promise<boolean> {
    const locks = (globalThis as { navigator?: { locks?: { request(name: string, cb: () => Promise<boolean>): Promise<boolean> } } }).navigator?.locks;
    return locks ? locks.request('or3-edge-refresh', () => this.#refreshLocked()) : this.#refreshLocked();
  }

  async #refreshLocked(): Promise<boolean> {
    const held = await this.#current();
    // Re-read the store: another tab may have rotated the tokens already (reusing the old
    // refresh token outside the grace window would revoke the whole session).
    const tokens = this.transport === 'bearer' ? await this.store.load() : held;
    if (this.transport === 'bearer' && !tokens) return false;
    if (tokens && held && tokens.accessToken !== held.accessToken && tokens.expiresAt - Date.now() > REFRESH_MARGIN_MS) {
      this.#tokens = tokens;
      return true;
    }
    let body: BearerBody;
    try {
      body = await this.#http.json<BearerBody>('POST', '/api/basic-auth/refresh?silent=1', tokens ? { refreshToken: tokens.refreshToken } : undefined, {
        auth: false,
        credentials: this.credentials,
        headers: this.#transportHeaders(),
      });
    } catch (err) {
      if (err instanceof Or3Error && err.transient) throw err; // offline: keep the tokens, try later
      body = { ok: false };
    }
    if (!body.ok) {
      this.#tokens = null;
      await this.store.save(null);
      this.onSignedOut();
      return false;
    }
    await this.#accept(body);
    return true;
  }

  /** For tests and diagnostics: makes the next request refresh first. */
  async expireAccessToken(): Promise<void> {
    const tokens = await this.#current();
    if (tokens) this.#tokens = { ...tokens, expiresAt: Date.now() };
  }
}

export class ExternalTokenAuth implements AuthAdapter {
  readonly credentials: RequestCredentials = 'omit';
  #recovering: Promise<boolean> | null = null;

  /** `getToken({ forceRefresh })` returns the provider's current JWT, or null when signed out. */
  constructor(private readonly getToken: (options: { forceRefresh: boolean }) => Promise<string | null>) {}

  async headers(): Promise<Record<string, string>> {
    const token = await this.getToken({ forceRefresh: false });
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  recover(_used: Record<string, string>): Promise<boolean> {
    this.#recovering ??= this.getToken({ forceRefresh: true })
      .then((t) => t !== null)
      .catch(() => false)
      .finally(() => (this.#recovering = null));
    return this.#recovering;
  }
}
