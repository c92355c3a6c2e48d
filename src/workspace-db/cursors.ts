/** Per-device pull cursors (docs/sync.md "Cursors"): forward-only; GC never deletes what the slowest live one needs. */
import type { Failure } from '../errors';
import { headVersion } from './meta';

export type CursorOutcome = { ok: true } | Failure;

/** Forward-only per-device cursor; equal is fine, regress 409, beyond the head 400, other user's device 403. */
export function updateCursor(sql: SqlStorage, input: { deviceId: string; version: number; userId: string }, now: number): CursorOutcome {
  const head = headVersion(sql);
  if (input.version > head)
    return { ok: false, status: 400, code: 'cursor_ahead', message: `version ${input.version} is above the workspace's latest version ${head}` };
  const current = sql
    .exec<{ user_id: string; version: number }>('SELECT user_id, version FROM device_cursors WHERE device_id = ?', input.deviceId)
    .toArray()[0];
  if (current && current.user_id !== input.userId) return { ok: false, status: 403, code: 'device_owned', message: 'This device id belongs to another user' };
  if (current && input.version < current.version) {
    return { ok: false, status: 409, code: 'cursor_regress', message: `Cursor cannot move backwards (from ${current.version} to ${input.version})` };
  }
  sql.exec(
    `INSERT INTO device_cursors (device_id, user_id, version, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
    input.deviceId,
    input.userId,
    input.version,
    now,
  );
  return { ok: true };
}
