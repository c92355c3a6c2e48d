/**
 * The object's one alarm, shared by two clocks: retention GC (every GC_INTERVAL_MS while there is
 * anything to collect, retention.ts) and the presence sweep (every few seconds while anyone is in
 * the roster, presence.ts). The platform gives an object a single alarm, so when the sweep needs
 * it before GC is due, GC's time waits in meta (`gc_due_at`; '' when GC had none) and the alarm
 * fires for the sweep. An alarm with no such record is GC's, exactly as before presence existed.
 */
import { deleteMeta, getMeta, setMeta } from './meta';

/** How often the alarm runs retention GC while the workspace has anything to collect. */
export const GC_INTERVAL_MS = 6 * 3600 * 1000;
const GC_DUE = 'gc_due_at';

/** Makes sure GC will run (after a write that may leave something to collect). */
export async function armGc(storage: DurableObjectStorage, now = Date.now()): Promise<void> {
  const deferred = getMeta(storage.sql, GC_DUE);
  if (deferred === '') setMeta(storage.sql, GC_DUE, now + GC_INTERVAL_MS);
  else if (deferred === null && (await storage.getAlarm()) === null) await storage.setAlarm(now + GC_INTERVAL_MS);
}

/** Makes sure the alarm fires by `at` for the presence sweep. */
export async function armSweep(storage: DurableObjectStorage, at: number): Promise<void> {
  const current = await storage.getAlarm();
  if (current !== null && current <= at) return;
  if (getMeta(storage.sql, GC_DUE) === null) setMeta(storage.sql, GC_DUE, current ?? '');
  await storage.setAlarm(at);
}

/**
 * The alarm handler: the sweep (cheap, in memory) first, then GC when it is due; re-arms for
 * whichever comes next. `gc` resolves whether anything is left to collect; `sweep` returns when
 * the next sweep is needed, or null. A throwing GC makes the platform retry the whole alarm,
 * which is harmless: both jobs are idempotent, and nothing here has moved yet.
 */
export async function runAlarm(storage: DurableObjectStorage, jobs: { gc: () => Promise<boolean>; sweep: () => number | null }): Promise<void> {
  const sweepAt = jobs.sweep();
  const deferred = getMeta(storage.sql, GC_DUE);
  let gcAt = deferred === null || deferred === '' ? null : Number(deferred);
  if (deferred === null || (gcAt !== null && gcAt <= Date.now())) gcAt = (await jobs.gc()) ? Date.now() + GC_INTERVAL_MS : null;
  if (sweepAt !== null && (gcAt === null || sweepAt < gcAt)) {
    setMeta(storage.sql, GC_DUE, gcAt ?? '');
    await storage.setAlarm(sweepAt);
  } else {
    deleteMeta(storage.sql, GC_DUE);
    if (gcAt !== null) await storage.setAlarm(gcAt);
  }
}
