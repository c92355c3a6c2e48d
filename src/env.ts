/**
 * The one Env type for the Worker and the Hono generics every feature router uses.
 *
 * Bindings and plain vars come from `wrangler types` (src/worker-configuration.d.ts, regenerated
 * by `npm run types` and checked for drift in CI). Secrets are not in wrangler.toml, so they are
 * declared here as optional strings: production validation in config.ts decides which are
 * required.
 */
import type { Config } from './config';
import type { Logger } from './http/logger';

export interface Secrets {
  OR3_BASIC_AUTH_JWT_SECRET?: string;
  /** The previous JWT secret, still accepted for verification while tokens signed with it live. */
  OR3_BASIC_AUTH_JWT_SECRET_PREVIOUS?: string;
  OR3_BASIC_AUTH_BOOTSTRAP_EMAIL?: string;
  OR3_BASIC_AUTH_BOOTSTRAP_PASSWORD?: string;
  OR3_STORAGE_URL_SECRET?: string;
  /** The previous storage URL secret, accepted until URLs signed with it have expired. */
  OR3_STORAGE_URL_SECRET_PREVIOUS?: string;
  R2_ACCOUNT_ID?: string;
  R2_ACCESS_KEY_ID?: string;
  R2_SECRET_ACCESS_KEY?: string;
  R2_BUCKET_NAME?: string;
}

/**
 * Plain vars deliberately left out of wrangler.toml `[vars]`: their defaults live in config.ts,
 * and an operator sets one only to change that default.
 */
export interface OptionalVars {
  OR3_WORKSPACE_CREATE_LIMIT_PER_HOUR?: string;
  OR3_AUTH_OIDC_MAX_TOKEN_AGE_SECONDS?: string;
}

/** Everything the Worker receives as `env`. */
export type Bindings = Env & Secrets & OptionalVars;

/** Per-request values set by the HTTP middleware. */
export interface Variables {
  requestId: string;
  config: Config;
  log: Logger;
}

/** Hono generics shared by the app and every feature sub-app. */
export interface AppEnv {
  Bindings: Bindings;
  Variables: Variables;
}
