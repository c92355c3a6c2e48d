/**
 * The one Env type for the Worker and the Hono generics every feature router uses.
 *
 * Bindings and plain vars come from `wrangler types` (src/worker-configuration.d.ts, regenerated
 * by `npm run types` and checked for drift in CI). Secrets and the vars left out of wrangler.toml
 * are not there, so config.ts lists them (`UndeclaredVariables`, optional strings) and decides
 * which are required (docs/configuration.md). The import runs one way: config.ts needs nothing
 * from here.
 */
import type { Config, UndeclaredVariables } from './config';
import type { Logger } from './http/logger';

/**
 * Everything the Worker receives as `env`. `ANALYTICS` is an optional Workers Analytics Engine
 * dataset (commented out in wrangler.toml; http/analytics.ts): absent, nothing is written.
 */
export type Bindings = Env & UndeclaredVariables & { ANALYTICS?: AnalyticsEngineDataset };

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
