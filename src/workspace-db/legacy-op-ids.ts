/**
 * The object migration that rewrites stored legacy opIds (docs/api.md "Legacy opIds"): every
 * non-UUID `op_id` of the change log and of the materialized rows and tombstones becomes its
 * deterministic UUID (protocol/legacy-op-ids.ts). It runs once per object, when the object starts
 * (after the SQL migrations), inside one transaction, and is idempotent: a second run finds
 * nothing to rewrite, and the marker in `meta` spares later starts even the scan.
 */
import { isUuid, legacyOpUuid } from '../../protocol/legacy-op-ids';
import { getMeta, setMeta } from './meta';

const MARKER = 'legacy_op_ids';

/** Rewrites the legacy opIds; returns how many distinct ids it rewrote. */
export function rewriteLegacyOpIds(sql: SqlStorage): number {
  if (getMeta(sql, MARKER) === 'done') return 0;
  const legacy = new Set<string>();
  for (const table of ['change_log', 'rows']) {
    for (const { op_id } of sql.exec<{ op_id: string }>(`SELECT DISTINCT op_id FROM ${table}`)) if (!isUuid(op_id)) legacy.add(op_id);
  }
  const pairs = [...legacy].map((old) => [old, legacyOpUuid(old)]);
  // Chunks keep each bound JSON string far below the runtime's 2 MB limit.
  for (let i = 0; i < pairs.length; i += 2000) {
    const chunk = JSON.stringify(pairs.slice(i, i + 2000));
    for (const table of ['change_log', 'rows']) {
      sql.exec(
        `UPDATE ${table} SET op_id = (SELECT j.value ->> 1 FROM json_each(?1) AS j WHERE j.value ->> 0 = ${table}.op_id)
          WHERE op_id IN (SELECT value ->> 0 FROM json_each(?1))`,
        chunk,
      );
    }
  }
  setMeta(sql, MARKER, 'done');
  return pairs.length;
}
