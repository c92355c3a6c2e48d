/**
 * A crash-test instrument (docs/architecture.md "Members live with their workspace"): in
 * development only, `OR3_DEV_MEMBER_COPY_PAUSE_MS` makes a workspace object wait that long
 * between writing a member's removal (the authority) and copying it to D1 and the user's
 * object, so a test can kill the dev server (`kill -9`) inside that window. Production never
 * reads it (the same rule as `OR3_DEV_D1_DELAY_MS`, d1-delay.ts).
 */
import type { Bindings } from '../env';

export async function devCopyPause(env: Bindings): Promise<void> {
  if (env.ENVIRONMENT !== 'development') return;
  const ms = Number((env as { OR3_DEV_MEMBER_COPY_PAUSE_MS?: string }).OR3_DEV_MEMBER_COPY_PAUSE_MS ?? 0);
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(ms, 60_000)));
}
