/**
 * Webhook event names and bodies (docs/webhooks.md "Events"). Names follow OR3's catalogue for the
 * tables OR3 knows (`thread.created`, `message.updated`, `document.deleted`,
 * `notification.created`, …) and the same `<noun>.<verb>` scheme for the rest. Pure: the
 * workspace's object calls it inside the push transaction, so it must not await.
 */

/** A winning write of a push, as the workspace's object reports it (its `AppliedWrite`). */
export interface AppliedWrite {
  op: { tableName: string; pk: string; op: 'put' | 'delete'; payload: string | null; deviceId: string };
  version: number;
  existed: boolean;
}

/** Each table's noun. OR3 keeps its documents in `posts`. */
const NOUNS: Record<string, string> = {
  threads: 'thread',
  messages: 'message',
  posts: 'document',
  projects: 'project',
  kv: 'kv',
  file_meta: 'file',
  notifications: 'notification',
};

export const WORKSPACE_EVENTS = Object.values(NOUNS).flatMap((noun) => ['created', 'updated', 'deleted'].map((verb) => `${noun}.${verb}`));

export { DEPLOYMENT_EVENTS, subscribed, type DeploymentEvent } from '../events/deployment';

/** The test delivery's event (`POST …/:hookId/test`). */
export const PING_EVENT = 'webhook.ping';

/** A row's data larger than this is left out of the body (`data_omitted: true`); read it with the service API. */
export const MAX_EVENT_DATA_CHARS = 256 * 1024;

/** Who made a change: a member (their user id) or a service token (`service:<name>`). */
export interface Actor {
  userId: string;
}

/** The event a winning write raises: a deletion is a delete op or a put whose payload says `deleted: true` (OR3's soft delete). */
export function eventName(write: AppliedWrite): string {
  const noun = NOUNS[write.op.tableName] ?? write.op.tableName;
  if (write.op.op === 'delete' || softDeleted(write.op.payload)) return `${noun}.deleted`;
  return write.existed ? `${noun}.updated` : `${noun}.created`;
}

function softDeleted(payload: string | null): boolean {
  // Canonical JSON (protocol.ts): a cheap look before parsing.
  if (!payload || !payload.includes('"deleted":')) return false;
  const value = (JSON.parse(payload) as { deleted?: unknown }).deleted;
  return value === true || value === 1;
}

/** The JSON body of an event: OR3's envelope (`event`, `event_id`, `timestamp`, `workspace_id`, `user_id`, `data`) plus the change itself. */
export function eventBody(input: { eventId: string; event: string; workspaceId: string; write: AppliedWrite; actor: Actor; now: number }): string {
  const { write, actor } = input;
  const service = actor.userId.startsWith('service:');
  const payload = write.op.payload;
  const omitted = payload !== null && payload.length > MAX_EVENT_DATA_CHARS;
  // The payload is already canonical JSON text: spliced in, not parsed and re-serialized.
  const data = write.op.op === 'delete' ? JSON.stringify({ id: write.op.pk, deleted: true }) : omitted ? 'null' : (payload ?? 'null');
  const head = JSON.stringify({
    event: input.event,
    event_id: input.eventId,
    timestamp: new Date(input.now).toISOString(),
    workspace_id: input.workspaceId,
    user_id: service ? null : actor.userId,
    actor: { type: service ? 'service' : 'user', id: actor.userId, device_id: write.op.deviceId },
    table: write.op.tableName,
    key: write.op.pk,
    op: write.op.op,
    server_version: write.version,
    ...(omitted ? { data_omitted: true } : {}),
  });
  return `${head.slice(0, -1)},"data":${data}}`;
}

/** A deployment event's body: OR3's envelope with `scope: "admin"` and no `user_id`. */
export function deploymentBody(input: { eventId: string; event: string; now: number; data: Record<string, unknown> }): string {
  return JSON.stringify({ event: input.event, event_id: input.eventId, timestamp: new Date(input.now).toISOString(), scope: 'admin', data: input.data });
}
