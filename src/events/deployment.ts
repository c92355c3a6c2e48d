/**
 * Deployment events for the deployment admins' hooks (docs/webhooks.md "Deployment events"):
 * a user created, disabled or deleted, a workspace created or deleted, an import finished, a sync
 * request the server failed (throttled, below). They are rare next to
 * sync traffic, and the Worker asks the deployment's hooks object only when a hook takes the
 * event: which events are taken is cached per isolate for a minute (dropped at once in the
 * isolate that changes a deployment hook), so with no deployment hooks nothing is called at all.
 * Never awaited by the request, never failing it.
 *
 * Its own room, so the rooms that raise these events (auth, accounts, workspaces, archive) need nothing
 * from src/webhooks/, which imports from them.
 */
import type { Context } from 'hono';
import type { AppEnv, Bindings } from '../env';
import { logEvent } from '../http/logger';

/** The object that holds the deployment admins' hooks (workspace ids never take this form). */
export const DEPLOYMENT_OBJECT = '__deployment__';

/** Deployment events, for the deployment admins' hooks. */
export const DEPLOYMENT_EVENTS = [
  'admin.user.created',
  'admin.user.disabled',
  'admin.user.deleted',
  'admin.workspace.created',
  'admin.workspace.deleted',
  'admin.import.finished',
  'admin.sync.error',
] as const;
export type DeploymentEvent = (typeof DEPLOYMENT_EVENTS)[number];

/** Whether an event filter takes `event` ("*" takes all; "message.*" every message event). */
export function subscribed(filter: readonly string[], event: string): boolean {
  for (const entry of filter) {
    if (entry === '*' || entry === event) return true;
    if (entry.endsWith('.*') && event.startsWith(entry.slice(0, -1))) return true;
  }
  return false;
}

const TTL_MS = 60_000;
let cached: { filters: string[]; at: number } | null = null;

/** Forget the cached subscriptions (a deployment hook changed in this isolate). */
export function deploymentHooksChanged() {
  cached = null;
}

async function send(env: Bindings, event: DeploymentEvent, data: Record<string, unknown>) {
  const stub = env.WORKSPACE.getByName(DEPLOYMENT_OBJECT);
  if (!cached || Date.now() - cached.at > TTL_MS) cached = { filters: await stub.deploymentSubscriptions(), at: Date.now() };
  if (!subscribed(cached.filters, event)) return;
  await stub.deploymentEvent(event, data);
}

export function emitDeploymentEvent(c: Context<AppEnv>, event: DeploymentEvent, data: Record<string, unknown>) {
  const pending = send(c.env, event, data).catch((err: unknown) =>
    logEvent('warn', 'deployment_event_failed', { event, message: err instanceof Error ? err.message : String(err) }),
  );
  waitUntil(c, pending);
}

function waitUntil(c: Context<AppEnv>, pending: Promise<unknown>) {
  try {
    c.executionCtx.waitUntil(pending);
  } catch {
    // No execution context (a test calling the app directly): it still runs.
  }
}

/** A sync error's event is raised at most once per error code per isolate per this long. */
export const SYNC_ERROR_EVERY_MS = 60_000;
const syncErrors = new Map<string, { at: number; suppressed: number }>();

/** Where a failed sync request came from: an HTTP route, or a message on a workspace's socket. */
export interface SyncFailure {
  status: number;
  code: string;
  method: string;
  path: string;
  /** The HTTP request's id, or the socket message's. */
  requestId: string | null;
  /** On the socket: the message's type (push, pull, cursor). */
  socketMessage?: string;
}

/**
 * A sync request answered 5xx (docs/webhooks.md "Deployment events"): raises `admin.sync.error`
 * at most once per error code per isolate per minute, carrying how many of that code went
 * unreported since; in an outage every failing request would otherwise call the one deployment
 * object. The Worker's HTTP routes and the workspace's objects (socket messages) share the
 * throttle of the isolate they run in. `waitUntil` keeps the call alive past the answer.
 */
export function raiseSyncError(env: Bindings, waitUntil: (pending: Promise<unknown>) => void, failure: SyncFailure) {
  const now = Date.now();
  const last = syncErrors.get(failure.code);
  if (last && now - last.at < SYNC_ERROR_EVERY_MS) {
    last.suppressed++;
    return;
  }
  if (syncErrors.size > 100) syncErrors.clear(); // codes are a short fixed list; bound it anyway
  syncErrors.set(failure.code, { at: now, suppressed: 0 });
  const event = 'admin.sync.error';
  const pending = send(env, event, {
    status: failure.status,
    error: failure.code,
    method: failure.method,
    path: failure.path,
    request_id: failure.requestId,
    ...(failure.socketMessage ? { socket_message: failure.socketMessage } : {}),
    suppressed_since_last: last?.suppressed ?? 0,
  }).catch((err: unknown) => logEvent('warn', 'deployment_event_failed', { event, message: err instanceof Error ? err.message : String(err) }));
  waitUntil(pending);
}

/** A sync route answered 5xx: `raiseSyncError` with the request's method, path and id (its log line has the rest). */
export function syncFailed(c: Context<AppEnv>, status: number, code: string) {
  raiseSyncError(c.env, (pending) => waitUntil(c, pending), { status, code, method: c.req.method, path: c.req.path, requestId: c.get('requestId') ?? null });
}
