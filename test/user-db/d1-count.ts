/**
 * Counting D1 statements (docs/architecture.md "Capacity model"): a Proxy over the real binding,
 * for the Worker (passed with `apiWithEnv`) or swapped into an object's env.
 */
import { runInDurableObject } from 'cloudflare:test';
import type { Bindings } from '../../src/env';

/** A D1 binding that counts statements by kind: reads (SELECT) and writes (everything else), batches by their statements. */
export function classifyingDb(db: D1Database) {
  const counter = { reads: 0, writes: 0 };
  /** Every statement run, in order (its SQL), beside the counts. */
  const statements: string[] = [];
  const kindOf = (sql: string) => (/^\s*select\b/i.test(sql) ? 'reads' : 'writes') as 'reads' | 'writes';
  const queries = new WeakMap<object, string>();
  const wrapped = new Proxy(db, {
    get(target, name) {
      if (name === 'prepare')
        return (sql: string) => {
          const statement = target.prepare(sql);
          const bound = new Proxy(statement, {
            get(s, n) {
              const v = Reflect.get(s, n);
              if (typeof v !== 'function') return v;
              if (n === 'bind')
                return (...args: unknown[]) => {
                  const b = (v as (...a: unknown[]) => D1PreparedStatement).apply(s, args);
                  queries.set(b, sql);
                  return new Proxy(b, { get: (bs, bn) => wrap(bs, bn, sql) });
                };
              return wrap(s, n, sql);
            },
          });
          queries.set(statement, sql);
          return bound;
        };
      if (name === 'batch')
        return (list: D1PreparedStatement[]) => {
          for (const s of list) {
            const sql = queries.get(s) ?? '';
            counter[kindOf(sql)]++;
            statements.push(sql);
          }
          return target.batch(list);
        };
      const value = Reflect.get(target, name);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  function wrap(s: D1PreparedStatement, n: string | symbol, sql: string) {
    const v = Reflect.get(s, n);
    if (typeof v !== 'function') return v;
    if (['first', 'all', 'run', 'raw'].includes(String(n))) {
      return (...args: unknown[]) => {
        counter[kindOf(sql)]++;
        statements.push(sql);
        return (v as (...a: unknown[]) => unknown).apply(s, args);
      };
    }
    return (v as (...a: unknown[]) => unknown).bind(s);
  }
  return { db: wrapped as D1Database, counter, statements };
}

/** Swaps the D1 binding inside an object for a counting one; returns a reader of its count. */
export async function countObjectD1(stub: DurableObjectStub) {
  await runInDurableObject(stub, (instance) => {
    const objectEnv = (instance as unknown as { env: Bindings & { __d1?: { reads: number; writes: number } } }).env;
    const { db, counter } = classifyingDb(objectEnv.DB);
    objectEnv.DB = db;
    objectEnv.__d1 = counter;
  });
  return () => runInDurableObject(stub, (instance) => ({ ...(instance as unknown as { env: { __d1: { reads: number; writes: number } } }).env.__d1 }));
}
