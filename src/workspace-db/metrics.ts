/**
 * The workspace's own usage counters (docs/operations.md "Metrics"): ops pushed and pulled,
 * bytes in and out, refusals by reason, per hour and per day; and peaks (names starting with
 * `peak_`: the most sockets open at once, the largest presence roster), kept as the bucket's
 * maximum instead of a sum. Deployment-wide
 * numbers are these rolled up on read (src/accounts/metrics.ts), so nothing central is written
 * on the request path.
 *
 * Counting is an in-memory add; the sums reach the object's storage (its synchronous KV, no
 * schema migration) at most every FLUSH_MS, coalesced with the object's other writes, and
 * whenever they are read; the first count after the object wakes is written at once. An object
 * evicted between flushes loses at most the counts of the FLUSH_MS after its last write: these
 * are operator numbers, not billing. Bounded: 48 hourly and 35 daily buckets.
 */
const FLUSH_MS = 10_000;
const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;
const KEEP_HOURS = 48;
const KEEP_DAYS = 35;
/** At most this many distinct counter names per bucket (refusal codes are a closed set, but be safe). */
const MAX_NAMES = 64;

export type Counters = Record<string, number>;

/** Counters named so hold a bucket's maximum, not its sum (the roll-up takes the maximum too). */
export const isPeak = (name: string) => name.startsWith('peak_');
export interface MeterReading {
  /** Bucket start (ISO) → counters. */
  hours: Record<string, Counters>;
  days: Record<string, Counters>;
}

const key = (kind: 'h' | 'd', index: number) => `metrics:${kind}:${String(index).padStart(8, '0')}`;

export class Meter {
  #pending = new Map<string, number>();
  /** 0: the first count after the object wakes is written at once, so a lone burst survives an eviction right after it. */
  #lastFlush = 0;
  #flushedHour = -1;

  constructor(private readonly storage: DurableObjectStorage) {}

  count(name: string, n = 1, now = Date.now()): void {
    if (n <= 0) return;
    if (!this.#pending.has(name) && this.#pending.size >= MAX_NAMES) return;
    this.#pending.set(name, (this.#pending.get(name) ?? 0) + n);
    if (now - this.#lastFlush >= FLUSH_MS) this.flush(now);
  }

  /** A level seen now (`peak_*`): the hour's and the day's buckets keep the highest. */
  peak(name: string, value: number, now = Date.now()): void {
    if (!isPeak(name) || value <= (this.#pending.get(name) ?? 0)) return;
    if (!this.#pending.has(name) && this.#pending.size >= MAX_NAMES) return;
    this.#pending.set(name, value);
    if (now - this.#lastFlush >= FLUSH_MS) this.flush(now);
  }

  /** Several counts at once (the push and pull paths: one call each). */
  counted(...pairs: [string, number][]): void {
    const now = Date.now();
    for (const [name, n] of pairs) this.count(name, n, now);
  }

  /** Adds the pending counts to this hour's and this day's buckets; drops buckets past their keep. */
  flush(now = Date.now()): void {
    this.#lastFlush = now;
    if (this.#pending.size === 0) return;
    const kv = this.storage.kv;
    const hour = Math.floor(now / HOUR_MS);
    for (const k of [key('h', hour), key('d', Math.floor(now / DAY_MS))]) {
      const bucket = { ...(kv.get<Counters>(k) ?? {}) };
      for (const [name, n] of this.#pending) {
        if (!(name in bucket) && Object.keys(bucket).length >= MAX_NAMES) continue;
        bucket[name] = isPeak(name) ? Math.max(bucket[name] ?? 0, n) : (bucket[name] ?? 0) + n;
      }
      kv.put(k, bucket);
    }
    this.#pending.clear();
    if (hour !== this.#flushedHour) {
      this.#flushedHour = hour;
      this.#prune('h', hour - KEEP_HOURS);
      this.#prune('d', Math.floor(now / DAY_MS) - KEEP_DAYS);
    }
  }

  #prune(kind: 'h' | 'd', before: number): void {
    const kv = this.storage.kv;
    const old = [...kv.list({ start: `metrics:${kind}:`, end: key(kind, before) })].map(([k]) => k);
    for (const k of old) kv.delete(k);
  }

  read(now = Date.now()): MeterReading {
    this.flush(now);
    const reading: MeterReading = { hours: {}, days: {} };
    for (const [k, counters] of this.storage.kv.list<Counters>({ prefix: 'metrics:' })) {
      const [, kind, index] = k.split(':');
      const start = new Date(Number(index) * (kind === 'h' ? HOUR_MS : DAY_MS)).toISOString();
      (kind === 'h' ? reading.hours : reading.days)[start] = counters;
    }
    return reading;
  }
}
