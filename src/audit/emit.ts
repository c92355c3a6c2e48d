/**
 * The one place security events are emitted: sign-ins and their failures, admin mutations,
 * permission denials, GC runs, rejected uploads. Each becomes a structured `audit` log line at
 * once and is persisted to R2 under `audit/v1/…` through the AuditLogDO (see object.ts), off
 * the response path: the request never waits for, or fails because of, the audit write
 * (docs/operations.md "Audit log"; the events: docs/auth.md "Audit events").
 *
 * Never pass secrets, tokens or passwords here: only ids, emails and outcomes.
 */
import type { Context } from 'hono';
import type { AppEnv, Bindings } from '../env';
import { logEvent } from '../http/logger';
import type { AuditInput } from './object';

export type AuditEventName =
  | 'auth.sign_in.success'
  | 'auth.sign_in.failure'
  | 'auth.register'
  | 'auth.refresh.reuse_detected'
  | 'auth.password.changed'
  | 'auth.sign_out'
  | 'auth.bootstrap_admin.created'
  | 'admin.workspace.deleted'
  | 'admin.workspace.restored'
  | 'admin.workspace.forked'
  | 'admin.member.upserted'
  | 'admin.member.removed'
  | 'admin.admin.granted'
  | 'admin.admin.revoked'
  | 'admin.workspace.pitr'
  | 'admin.import'
  | 'admin.storage.committed'
  | 'workspace.permission_denied'
  | 'workspace.invite.revoked'
  | 'storage.upload.rejected'
  | 'storage.gc.run'
  | 'sync.gc.run';

export interface AuditFields {
  requestId?: string;
  actorId?: string | null;
  targetUserId?: string;
  workspaceId?: string;
  email?: string;
  ip?: string;
  outcome?: string;
  [key: string]: string | number | boolean | null | undefined;
}

/** The object every isolate sends its audit events to. */
export const AUDIT_OBJECT_NAME = 'audit';

/**
 * Logs the event and persists it. Never rejects: a failed write is logged as
 * `audit_persist_failed` (the `audit` log line above it still carries the event).
 */
export async function recordAudit(env: Bindings, event: AuditEventName, fields: AuditFields = {}): Promise<void> {
  const record: AuditInput = { at: new Date().toISOString(), event };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && key !== 'seq' && key !== 'at' && key !== 'event') record[key] = value;
  const { event: _name, ...rest } = record; // the log line's own `event` is "audit"
  logEvent('info', 'audit', { audit: event, ...rest });
  try {
    await env.AUDIT.getByName(AUDIT_OBJECT_NAME).append([record]);
  } catch (err) {
    logEvent('error', 'audit_persist_failed', { audit: event, message: err instanceof Error ? err.message : String(err) });
  }
}

/** `recordAudit` for a request: fills in the request id and persists after the response. */
export function audit(c: Context<AppEnv>, event: AuditEventName, fields: AuditFields = {}) {
  const pending = recordAudit(c.env, event, { requestId: c.get('requestId'), ...fields });
  try {
    c.executionCtx.waitUntil(pending);
  } catch {
    // No execution context (a test calling the app directly): the write still runs on its own.
  }
}
