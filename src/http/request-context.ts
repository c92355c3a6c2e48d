/**
 * The first middleware of every request: assigns the request id, loads the configuration,
 * times the request and writes its one log line.
 *
 * A misconfigured production deployment answers every request with 503 `misconfigured`
 * (fail closed) and logs which variable is wrong and how to set it. Values are never logged,
 * only variable names, so a half-set secret cannot leak through the log.
 */
import type { MiddlewareHandler } from 'hono';
import { loadConfig } from '../config';
import type { AppEnv } from '../env';
import { errorBody } from '../errors';
import { mutateResponseHeaders } from './headers';
import { Logger, logEvent } from './logger';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// Dev secrets are announced once per isolate, not once per request.
let devWarningShown = false;

export function requestContext(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
    const log = new Logger();
    c.set('requestId', requestId);
    c.set('log', log);

    const result = loadConfig(c.env);
    // Until the config is known to be valid, treat the deployment as production: no stacks.
    const production = result.ok ? result.config.production : true;
    try {
      if (!result.ok) {
        for (const p of result.problems) {
          logEvent('error', 'config_invalid', { requestId, variable: p.variable, problem: p.message, fix: p.fix });
        }
        const names = [...new Set(result.problems.map((p) => p.variable))].join(', ');
        // Assigned, not returned, so the log line below sees the real status.
        c.res = c.json(errorBody('misconfigured', `The server is misconfigured (${names}); the operator must fix it. See docs/configuration.md.`), 503);
        return;
      }
      c.set('config', result.config);
      if (result.config.devSecretsInUse.length && !devWarningShown) {
        devWarningShown = true;
        logEvent('warn', 'dev_secrets_in_use', {
          variables: result.config.devSecretsInUse.join(', '),
          message: 'DEVELOPMENT ONLY: built-in insecure secrets are in use. Never deploy with ENVIRONMENT=development.',
        });
      }
      await next();
    } finally {
      mutateResponseHeaders(c, (h) => h.set('x-request-id', requestId));
      log.emit(
        {
          requestId,
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          durationMs: Math.round((performance.now() - started) * 100) / 100,
        },
        production,
      );
    }
  };
}
