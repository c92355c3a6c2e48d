/**
 * A bench instrument (docs/performance.md "Central load"): in development only,
 * `OR3_DEV_D1_DELAY_MS` delays every D1 query by that many milliseconds, to model a user far
 * from the D1 region, and counts the queries it delayed: `GET /api/dev/d1-queries` answers the
 * count, so the bench knows exactly which requests waited on D1 rather than guessing from their
 * time on a loaded machine. Production never reads the variable, and the route answers 404 there.
 */
import type { MiddlewareHandler } from 'hono';
import type { AppEnv, Bindings } from '../env';
import { errorBody } from '../errors';

const delayed = new WeakMap<D1Database, D1Database>();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Queries delayed so far in this isolate. Under `wrangler dev` the Worker and its Durable
 * Objects run in one isolate, so the count covers the queries objects make for a request too.
 */
let delayedQueries = 0;
const delay = (ms: number, queries: number) => ((delayedQueries += queries), sleep(ms));

/** Wraps a statement so each of its executions waits `ms` first. */
function slowStatement(statement: D1PreparedStatement, ms: number): D1PreparedStatement {
  return new Proxy(statement, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      if (name === 'bind') return (...args: unknown[]) => slowStatement(value.apply(target, args), ms);
      if (['first', 'all', 'run', 'raw'].includes(String(name))) return async (...args: unknown[]) => (await delay(ms, 1), value.apply(target, args));
      return value.bind(target);
    },
  });
}

/** `env.DB`, slowed down when the bench asks for it in development. */
export function devD1(env: Bindings): D1Database {
  const ms = Number((env as { OR3_DEV_D1_DELAY_MS?: string }).OR3_DEV_D1_DELAY_MS ?? 0);
  if (!ms || env.ENVIRONMENT !== 'development') return env.DB;
  let db = delayed.get(env.DB);
  if (!db) {
    const real = env.DB;
    db = new Proxy(real, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (name === 'prepare') return (query: string) => slowStatement(target.prepare(query), ms);
        if (name === 'batch') return async (statements: D1PreparedStatement[]) => (await delay(ms, statements.length), target.batch(statements));
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    delayed.set(real, db);
  }
  return db;
}

/** The Worker's side: in development, the request's `env.DB` is the slowed one (the object wraps its own, access.ts). */
export function devD1Delay(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!c.get('config').production) c.env = { ...c.env, DB: devD1(c.env) };
    await next();
  };
}

/** `GET /api/dev/d1-queries`: `{ delayed }`, the queries delayed so far; 404 unless the delay is on in development. */
export function devD1Queries(): MiddlewareHandler<AppEnv> {
  return async (c) => {
    const on = !c.get('config').production && Number((c.env as { OR3_DEV_D1_DELAY_MS?: string }).OR3_DEV_D1_DELAY_MS ?? 0) > 0;
    // Off: exactly what an unknown route answers (src/http/fallbacks.ts).
    return on ? c.json({ delayed: delayedQueries }) : c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}`), 404);
  };
}
