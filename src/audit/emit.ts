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
  | 'auth.setup_admin.created'
  | 'admin.workspace.deleted'
  | 'admin.workspace.restored'
  | 'admin.workspace.forked'
  | 'admin.workspace.exported'
  | 'admin.member.upserted'
  | 'admin.member.removed'
  | 'admin.members.repaired'
  | 'admin.guest_access.set'
  | 'admin.admin.granted'
  | 'admin.admin.revoked'
  | 'admin.user.disabled'
  | 'admin.user.enabled'
  | 'admin.user.signed_out'
  | 'admin.user.password_reset'
  | 'admin.user.deleted'
  | 'auth.password.reset'
  | 'auth.email.changed'
  | 'auth.account.deleted'
  | 'admin.workspace.pitr'
  | 'admin.import'
  | 'admin.storage.committed'
  | 'workspace.permission_denied'
  | 'workspace.invite.revoked'
  | 'workspace.invite.created'
  | 'storage.upload.rejected'
  | 'storage.file.deleted'
  | 'storage.gc.run'
  | 'sync.gc.run'
  | 'webhook.created'
  | 'webhook.deleted'
  | 'webhook.secret_rotated'
  | 'service.token.created'
  | 'service.token.revoked'
  | 'service.token.used';

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

/**
 * The audit log is spread over this many AuditLogDOs (`audit-0` …), none of them on every
 * request's path: an event goes to the shard of its source — its workspace, else its actor,
 * else the account or address it is about — so one source's events stay in order in one shard,
 * and sign-ins across the deployment do not queue behind one object (docs/operations.md).
 */
export const AUDIT_SHARDS = 16;

/** The single object of earlier releases; its batches stay readable (audit/log.ts). */
export const LEGACY_AUDIT_OBJECT = 'audit';

/** The shard an event belongs to: a stable hash (FNV-1a) of its source. */
export function auditShardOf(record: Record<string, unknown>): string {
  const source = String(record.workspaceId ?? record.actorId ?? record.targetUserId ?? record.email ?? record.ip ?? record.event ?? '');
  let hash = 0x811c9dc5;
  for (let i = 0; i < source.length; i++) hash = Math.imul(hash ^ source.charCodeAt(i), 0x01000193);
  return `audit-${(hash >>> 0) % AUDIT_SHARDS}`;
}

/** Every object that may hold events: the shards, and the legacy single object. */
export const auditObjectNames = () => [...Array.from({ length: AUDIT_SHARDS }, (_, i) => `audit-${i}`), LEGACY_AUDIT_OBJECT];

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
    await env.AUDIT.getByName(auditShardOf(record)).append([record]);
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
