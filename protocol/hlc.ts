/**
 * Hybrid logical clock stamps: `<wall ms, 15 digits>:<counter, 6 digits>:<deviceId>`, the
 * format both ends write (the SDK's clock, client/src/hlc.ts; the server's clock for service
 * writes, src/service/stamp.ts).
 *
 * Zero-padded fields make the stamps compare correctly as plain strings, which is how the
 * server orders them (after `clock`).
 */
export interface HlcState {
  wall: number;
  counter: number;
}

/** The counter's largest value (6 digits); a clock borrows a millisecond rather than overflow. */
export const COUNTER_MAX = 999_999;

export function formatHlc(state: HlcState, deviceId: string): string {
  return `${String(state.wall).padStart(15, '0')}:${String(state.counter).padStart(6, '0')}:${deviceId}`;
}

export function parseHlc(hlc: string): HlcState | null {
  const match = /^(\d{15}):(\d{6}):/.exec(hlc);
  return match ? { wall: Number(match[1]), counter: Number(match[2]) } : null;
}
