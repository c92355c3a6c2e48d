/**
 * The object's own configuration (docs/architecture.md "The object reads its own config"): the
 * same zod schema as the Worker's (src/config.ts), parsed once per isolate from the object's own
 * `env`, so quotas, limits and lifetimes are not sent with every RPC. The Worker answers 503
 * `misconfigured` before any call reaches the object, so a parse failure here is a deployment
 * that changed under a running object: it throws (500) rather than guess a value.
 */
import { loadConfig, type Config, type RawEnv } from '../config';

export function objectConfig(env: RawEnv): Config {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error(`The configuration is invalid (${loaded.problems.map((p) => p.variable).join(', ')}); see docs/configuration.md`);
  return loaded.config;
}
