/**
 * A push's poke built from the ops it just applied (docs/performance.md "Push"): the commit's
 * changes are exactly the keys the batch touched, each at its last logged version with its
 * winner, so the poke needs no read back. Same meaning as a pull from the previous head
 * (reads.ts `pull`; test/sync/poke.test.ts compares both): same keys, winners and versions, in
 * version order. When a key's winner is not in the batch (all of its ops lost last-write-wins)
 * or a file_meta row changed (its `ref_count` is derived at read time), the batch has no poke
 * of its own and the caller pulls as before.
 */
import type { PreparedOp } from '../../protocol/rules';

/** The commit's changes as wire JSON: `common` for every user, `mine` with the pusher's notifications too. */
export interface PokeChanges {
  common: string;
  mine: string;
  /** Payload bytes of the changes (the poke's budget counts these, as a pull page does). */
  bytes: number;
  count: number;
}

/** One change as a pull page has it (reads.ts CHANGE_COLUMNS), from the op that wins its key. */
const changeJson = (op: PreparedOp, version: number) =>
  `{"serverVersion":${version},"tableName":${JSON.stringify(op.tableName)},"pk":${JSON.stringify(op.pk)},"op":"${op.op}"` +
  `,"stamp":{"deviceId":${JSON.stringify(op.deviceId)},"opId":${JSON.stringify(op.opId)},"hlc":${JSON.stringify(op.hlc)},"clock":${op.clock}}` +
  (op.payload === null ? '}' : `,"payload":${op.payload}}`);

/**
 * `winners`: each key's winning op of the batch; `touched`: each key's last logged version.
 * Null when the poke must be read back instead (see above).
 */
export function pokeFromOps(
  winners: Map<string, { op: PreparedOp; version: number }>,
  touched: Map<string, { tableName: string; pk: string; version: number }>,
): PokeChanges | null {
  if (winners.size !== touched.size) return null;
  const changes: { version: number; json: string; mineOnly: boolean }[] = [];
  let bytes = 0;
  for (const [key, { op }] of winners) {
    if (op.tableName === 'file_meta') return null;
    const version = touched.get(key)!.version;
    changes.push({ version, json: changeJson(op, version), mineOnly: op.tableName === 'notifications' });
    bytes += op.payload?.length ?? 0;
  }
  changes.sort((a, b) => a.version - b.version);
  const mine = `[${changes.map((c) => c.json).join(',')}]`;
  const common = changes.some((c) => c.mineOnly) ? `[${changes.flatMap((c) => (c.mineOnly ? [] : [c.json])).join(',')}]` : mine;
  return { common, mine, bytes, count: changes.length };
}
