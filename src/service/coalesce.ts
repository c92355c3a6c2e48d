/**
 * Coalesced pokes for streamed writes (docs/service-api.md "Streaming a message"): an agent
 * writing an assistant message token by token commits every put, but devices are poked at most
 * once per `intervalMs` for them: the poke covers every version since the last one, and since a
 * pull (and a poke's changes) is compacted, a device receives the row once, at its latest text.
 * An ordinary commit pokes at once and takes any pending stream range with it. Lives in the
 * workspace's object; the timer keeps it awake only while a stream is writing.
 */
/**
 * `exact`: what the poke may carry when it covers exactly one commit (its changes built from the
 * ops, the pushing socket); a poke that also covers coalesced stream versions goes without it.
 */
type Poke<T> = (fromVersion: number, toVersion: number, perUser: boolean, exact: T | null) => void;

export const STREAM_POKE_INTERVAL_MS = 250;

export class PokeCoalescer<T = never> {
  #pending: { from: number; to: number; perUser: boolean } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastAt = 0;

  constructor(
    private readonly poke: Poke<T>,
    private readonly intervalMs = STREAM_POKE_INTERVAL_MS,
  ) {}

  /** A commit of versions (from, to]; `stream`: a streamed write, whose poke may wait. */
  committed(from: number, to: number, perUser: boolean, stream: boolean, exact: T | null = null, now = Date.now()) {
    const pending = this.#pending;
    // Nothing waiting: an ordinary commit pokes at once with what it carries.
    if (!pending && !stream) {
      this.#lastAt = now;
      return this.poke(from, to, perUser, exact);
    }
    this.#pending = pending ? { from: Math.min(pending.from, from), to: Math.max(pending.to, to), perUser: pending.perUser || perUser } : { from, to, perUser };
    if (!stream || now - this.#lastAt >= this.intervalMs) return this.flush(now);
    this.#timer ??= setTimeout(() => this.flush(), this.intervalMs - (now - this.#lastAt));
  }

  flush(now = Date.now()) {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const pending = this.#pending;
    this.#pending = null;
    if (!pending) return;
    this.#lastAt = now;
    this.poke(pending.from, pending.to, pending.perUser, null);
  }
}
