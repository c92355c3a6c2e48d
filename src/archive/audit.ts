/**
 * The one place security events are emitted: sign-ins and their failures, admin mutations,
 * permission denials, GC runs, rejected uploads. Each is a structured `audit` log line now;
 * the archive feature persists the same events to R2 under `audit/v1/…`.
 *
 * Never pass secrets, tokens or passwords here: only ids, emails and outcomes.
 */
import { logEvent } from '../http/logger';

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
  | 'storage.upload.rejected'
  | 'storage.gc.run';

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

export function audit(event: AuditEventName, fields: AuditFields = {}) {
  logEvent('info', 'audit', { audit: event, at: new Date().toISOString(), ...fields });
}
