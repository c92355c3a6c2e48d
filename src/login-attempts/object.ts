/**
 * LoginAttemptsDO: one Durable Object per attempt key (`signin:<SHA-256 of the email>`,
 * `cpw:<user id>`; src/auth/store.ts `attemptKey`), named by the key, holding that key's backoff
 * counter (backoff.ts; docs/auth.md "Backoff"). An object serves one request at a time and each count is one synchronous read-and-write of its
 * storage, so parallel guesses cannot outrun the backoff; the counter is stored, not only held
 * in memory, so an evicted object still remembers a 15-minute block. Once the counter no longer
 * matters an alarm deletes everything, and a success deletes it at once: objects made by
 * guessing emails keep nothing. Per key, never one object for the deployment: the load spreads
 * with the accounts. The RPC surface only; the rules are in backoff.ts.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Bindings } from '../env';
import { countAttempt, forgetAt, type AttemptState, type AttemptVerdict } from './backoff';

/** The one stored entry (the SQLite-backed object's synchronous key-value storage). */
const COUNTER = 'counter';

export class LoginAttemptsDO extends DurableObject<Bindings> {
  /** Counts a password attempt BEFORE the password is checked, and says whether it may proceed. */
  async count(): Promise<AttemptVerdict> {
    const { verdict, next } = countAttempt(this.#read(), Date.now());
    if (next) {
      this.ctx.storage.kv.put(COUNTER, next);
      await this.ctx.storage.setAlarm(forgetAt(next));
    }
    return verdict;
  }

  /** A success: the counter goes, and its alarm with it. */
  async clear(): Promise<void> {
    if (this.#read()) await this.ctx.storage.deleteAll(); // the alarm too (compatibility date 2026-02-24 or later)
  }

  /** The counter as stored (null: none); what the tests look at. */
  state(): AttemptState | null {
    return this.#read() ?? null;
  }

  override async alarm(): Promise<void> {
    const state = this.#read();
    if (!state) return;
    const at = forgetAt(state);
    if (Date.now() >= at) await this.ctx.storage.deleteAll();
    else await this.ctx.storage.setAlarm(at);
  }

  #read(): AttemptState | undefined {
    return this.ctx.storage.kv.get<AttemptState>(COUNTER);
  }
}
