/**
 * This device's hybrid logical clock (stamps' format: protocol/hlc.ts). A stamp never goes
 * backwards on one device, even when the wall clock does (NTP step, manual change), and
 * `observe()` moves it past stamps seen from other devices so a later local edit outranks what
 * it has already seen.
 */
import { COUNTER_MAX, formatHlc, parseHlc, type HlcState } from '../../protocol/hlc.js';

export { formatHlc, parseHlc, type HlcState };

export class HybridClock {
  #last: HlcState;

  constructor(
    readonly deviceId: string,
    last: HlcState = { wall: 0, counter: 0 },
    private readonly wallClock: () => number = Date.now,
  ) {
    this.#last = { ...last };
  }

  get state(): HlcState {
    return { ...this.#last };
  }

  /** A new stamp, strictly greater than every stamp issued or observed before. */
  next(): string {
    const wall = this.wallClock();
    if (wall > this.#last.wall) this.#last = { wall, counter: 0 };
    else if (this.#last.counter < COUNTER_MAX) this.#last = { wall: this.#last.wall, counter: this.#last.counter + 1 };
    else this.#last = { wall: this.#last.wall + 1, counter: 0 }; // borrow a millisecond rather than overflow
    return formatHlc(this.#last, this.deviceId);
  }

  /** Moves the clock past a stamp seen from elsewhere (remote changes). */
  observe(hlc: string): void {
    const seen = parseHlc(hlc);
    if (!seen) return;
    if (seen.wall > this.#last.wall || (seen.wall === this.#last.wall && seen.counter > this.#last.counter)) this.#last = seen;
  }
}
