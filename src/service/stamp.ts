/**
 * Server-authored writes (docs/service-api.md "Writing"): a service token's ops go through the
 * same engine as a device's, stamped by the server. The device id is always
 * `service:<token name>`; the opId, HLC and clock are the caller's when given, else the server's:
 * a fresh UUID, the object's own hybrid clock (`<wall ms>:<counter>:service:<name>`, the SDK's
 * format), and the row's current clock + 1, so a server write wins over what it has read.
 */
import * as z from 'zod';
import { formatHlc } from '../../protocol/hlc';
import type { PushOpInput } from '../../protocol/rules';

/** A service op: a device's op whose stamp is optional (and whose deviceId is never taken). */
export const serviceOpSchema = z.looseObject({
  tableName: z.string().min(1).max(64),
  operation: z.enum(['put', 'delete']),
  pk: z.string().min(1).max(256),
  payload: z.record(z.string(), z.unknown()).optional().nullable(),
  stamp: z
    .strictObject({
      opId: z.uuid().optional(),
      hlc: z.string().min(1).max(128).optional(),
      clock: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
      deviceId: z.string().optional(),
    })
    .optional(),
});
export type ServiceOp = z.output<typeof serviceOpSchema>;

/** The object's hybrid clock for server stamps: never goes backwards within an instance. */
export class ServerClock {
  #wall = 0;
  #counter = 0;
  next(deviceId: string, now = Date.now()): string {
    if (now > this.#wall) [this.#wall, this.#counter] = [now, 0];
    else this.#counter++;
    return formatHlc({ wall: this.#wall, counter: this.#counter }, deviceId);
  }
}

/** Stamps service ops as device ops; `currentClock` reads a row's clock (null when it has none). */
export function stampOps(ops: ServiceOp[], actor: string, clock: ServerClock, currentClock: (table: string, pk: string) => number | null): PushOpInput[] {
  const nextClock = new Map<string, number>();
  return ops.map((op) => {
    const key = `${op.tableName}\u0000${op.pk}`;
    let rowClock = op.stamp?.clock;
    if (rowClock === undefined) {
      rowClock = (nextClock.get(key) ?? currentClock(op.tableName, op.pk) ?? 0) + 1;
      nextClock.set(key, rowClock);
    }
    const { stamp: _given, ...rest } = op;
    return {
      ...rest,
      stamp: { deviceId: actor, opId: op.stamp?.opId ?? crypto.randomUUID(), hlc: op.stamp?.hlc ?? clock.next(actor), clock: rowClock },
    } as PushOpInput;
  });
}
