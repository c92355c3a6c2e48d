/**
 * Sync over the workspace's socket (docs/sync.md "Sync over the socket", an ext): push, pull and
 * the device's cursor as messages on the hibernating WebSocket the SDK already holds, answered
 * by the object directly — no HTTP, no Worker, no second copy of a page. One implementation with
 * the HTTP routes: the same envelope rules and `prepareBatch` (run here, in the object: a socket
 * message has no Worker in front of it), the same sync service (sync-service.ts: transaction,
 * compaction, rate limits, quota), and authorization re-checked for every message from the
 * object's cache (access.ts) with the credential the socket was accepted with, so a removal,
 * role change, sign-out or password change applies to the very next message. Every answer is
 * built by downstream.ts.
 *
 * Pull streams pages until the head, never more than `window` pages ahead of the client's last
 * `ack`: a slow device is never flooded. What a stream needs to go on lives in the socket's
 * attachment, so it survives the object's hibernation.
 *
 * Per-socket memory is bounded (SECURITY checklist case 45): one stream per socket (a new pull
 * replaces the old), and the bytes of pages sent but not acknowledged count across streams — a
 * replaced stream's unacknowledged pages become the socket's debt (`owed`), because they still
 * sit in its send buffer. Streaming pauses at `maxUnackedBytes`; a pull that arrives while the
 * socket owes that much closes it (1008). A socket delivers its messages in order, so an ack of
 * a page proves every page sent before it arrived: it clears the debt.
 */
import type { SocketError } from '../../protocol/socket';
import { WireError } from '../errors';
import { describeIssues } from '../http/body';
import {
  SOCKET_SYNC_LIMITS,
  SYNC_LIMITS,
  prepareBatch,
  socketSyncMessage,
  type PreparedOp,
  type SocketSyncMessage,
  type TableName,
} from '../../protocol/rules';
import type { ShardCaller, SyncCaller } from '../workspace-contract';
import * as downstream from './downstream';
import type { SyncService } from './sync-service';

/**
 * Who a socket was accepted for, kept in its attachment for sync. Its rate limits are the
 * object's own (settings.ts), like every sync request's: an older socket's `limits` field is ignored.
 */
export interface SocketSyncSettings {
  /**
   * Who the socket was accepted for. Its credential is kept without the token's expiry: a
   * socket outlives the access token that opened it, and what ends it is a revocation (which
   * closes it), while each message is still authorized against the cached facts.
   */
  caller: Omit<ShardCaller, 'permission'>;
  /** The user the object resolved at accept (a federated credential names none). */
  userId: string;
}

/** A pull being streamed to a socket. */
export interface PullStream {
  id: string;
  /** Where the next page starts. */
  cursor: number;
  /** Pages sent whose `nextCursor` the client has not acknowledged yet, with their size. */
  unacked: { cursor: number; bytes: number }[];
  limit: number;
  tables?: TableName[];
  window: number;
}

/** What the socket handler calls: the sync service, for the socket's own messages. */
export type SyncMethods = Pick<SyncService, 'screen' | 'push' | 'pull' | 'updateCursor'>;

/** The attachment fields sync uses; the rest of the attachment belongs to sockets.ts. */
export interface SyncAttachment {
  sync?: SocketSyncSettings;
  stream?: PullStream | null;
  /** Bytes of replaced streams' pages not acknowledged yet (see above). */
  owed?: number;
}

/** Sends one message; a refusal names its failure too, so the sockets can report the server's own (5xx). */
type Send = (text: string, refused?: SocketError) => void;
type Close = (code: number, reason: string) => void;

const unackedBytes = (stream: PullStream | null | undefined) => (stream?.unacked ?? []).reduce((n, page) => n + page.bytes, 0);

const UNSUPPORTED: SocketError = { status: 400, code: 'unsupported', message: 'This socket was not opened for sync' };
const invalidBody = (message: string): SocketError => ({ status: 400, code: 'invalid_body', message });

/**
 * Frames longer than this are screened before they are parsed: only a push can be this large (a
 * presence state is at most 1 KB, a pull or an ack a few), so who sends it must be allowed to
 * push, and not be over the push rate (SECURITY checklist case 48).
 */
export const SCREEN_FRAME_CHARS = 64 * 1024;

/** The id of a push frame as the SDK writes it (`{"type":"push","id":…`), read without parsing the rest. */
const LEADING_PUSH_ID = /^\{\s*"type"\s*:\s*"push"\s*,\s*"id"\s*:\s*"([^"\\]{1,64})"/;

/**
 * Screens a large frame before anything parses it, then parses it: the message, or null when it
 * was refused (the refusal sent, with the frame's id when it starts the way the SDK writes pushes).
 */
export async function admitLargeFrame(
  methods: Pick<SyncMethods, 'screen'>,
  data: string,
  read: () => SyncAttachment,
  send: Send,
  close: Close,
): Promise<object | null> {
  const id = LEADING_PUSH_ID.exec(data.slice(0, 256))?.[1] ?? null;
  const settings = read().sync;
  const refused = settings ? await methods.screen(callerOf(settings, 'write', 'push')) : UNSUPPORTED;
  if (refused) {
    send(downstream.error(id, refused), refused);
    // A caller who may not push at all (a viewer, a removed member) gets one large frame per
    // socket: every later one would cost the serial object its receiving, whatever we answer
    // (docs/security.md). A rate limit passes; the socket stays open for it.
    if (refused.status === 403) close(1008, 'Large pushes refused: this socket may not push');
    return null;
  }
  try {
    const parsed: unknown = JSON.parse(data);
    if (typeof parsed === 'object' && parsed !== null) return parsed;
  } catch {
    // answered below
  }
  send(downstream.error(id, invalidBody('A message must be a JSON object')));
  return null;
}

/** Whether a parsed message is one of sync's (push, pull, ack, cursor). */
export const isSyncMessage = (message: { type?: unknown }) =>
  message.type === 'push' || message.type === 'pull' || message.type === 'ack' || message.type === 'cursor';

/**
 * Handles one sync message from a socket. `attachment` is read and written through the
 * callbacks so sockets.ts stays the one owner of the attachment's shape.
 */
export async function handleSyncMessage(
  methods: SyncMethods,
  raw: unknown,
  read: () => SyncAttachment,
  write: (patch: SyncAttachment) => void,
  send: Send,
  close: Close,
  /** This socket: its push may ask not to hear its own changes back (`echo: false`). */
  socket?: WebSocket,
): Promise<void> {
  const parsed = socketSyncMessage.safeParse(raw);
  const id = typeof (raw as { id?: unknown })?.id === 'string' ? ((raw as { id: string }).id.slice(0, SOCKET_SYNC_LIMITS.idLength) ?? null) : null;
  if (!parsed.success) return send(downstream.error(id, invalidBody(describeIssues(parsed.error.issues))));
  const settings = read().sync;
  if (!settings) return send(downstream.error(id, UNSUPPORTED));
  const message = parsed.data;
  if (message.type === 'push') return push(methods, settings, message, send, message.echo === false ? socket : undefined);
  if (message.type === 'cursor') return cursor(methods, settings, message, send);
  if (message.type === 'pull') {
    const { stream: previous, owed = 0 } = read();
    const debt = owed + unackedBytes(previous);
    if (debt >= SOCKET_SYNC_LIMITS.maxUnackedBytes) {
      write({ stream: null, owed: debt });
      return close(1008, `More than ${SOCKET_SYNC_LIMITS.maxUnackedBytes} bytes of pages unacknowledged`);
    }
    const stream: PullStream = {
      id: message.id,
      cursor: message.cursor,
      unacked: [],
      limit: message.limit ?? SYNC_LIMITS.pullMax,
      ...(message.tables ? { tables: message.tables } : {}),
      window: message.window ?? SOCKET_SYNC_LIMITS.window,
    };
    return streamPages(methods, settings, stream, debt, write, send, true);
  }
  const { stream, owed = 0 } = read();
  if (!stream || stream.id !== message.id) return; // a late ack of a finished or replaced stream
  const left = stream.unacked.filter((page) => page.cursor > message.cursor);
  // Pages arrive in order: an acknowledged page means everything sent before it arrived too.
  const debt = left.length < stream.unacked.length ? 0 : owed;
  stream.unacked = left;
  return streamPages(methods, settings, stream, debt, write, send, false);
}

const callerOf = (settings: SocketSyncSettings, permission: 'read' | 'write', limit: 'push' | 'pull' | 'updateCursor'): SyncCaller => ({
  ...settings.caller,
  permission,
  limit,
});

async function push(
  methods: SyncMethods,
  settings: SocketSyncSettings,
  message: Extract<SocketSyncMessage, { type: 'push' }>,
  send: Send,
  pusher: WebSocket | undefined,
) {
  const caller = callerOf(settings, 'write', 'push');
  let ops: PreparedOp[];
  try {
    // Notifications are forced to their pusher: the user resolved when the socket was accepted
    // (the object's push authorizes the same credential again and refuses another user).
    ops = await prepareBatch(message.ops, caller.workspaceId, settings.userId, SOCKET_SYNC_LIMITS.maxBatchBytes);
  } catch (err) {
    if (err instanceof WireError) return send(downstream.error(message.id, err));
    throw err;
  }
  // A socket's push declares every capability (the SDK keeps every field): `missing` is 0.
  const result = await methods.push(caller, ops, pusher ? { pusher } : {});
  if (!result.ok) return send(downstream.error(message.id, result), result);
  send(downstream.pushResult(message.id, result.results, result.serverVersion));
}

/** The device's cursor (the HTTP update-cursor's meaning and rules): read permission, and its own rate limit. */
async function cursor(methods: SyncMethods, settings: SocketSyncSettings, message: Extract<SocketSyncMessage, { type: 'cursor' }>, send: Send) {
  const result = await methods.updateCursor(callerOf(settings, 'read', 'updateCursor'), { deviceId: message.deviceId, version: message.version });
  if (!result.ok) return send(downstream.error(message.id, result), result);
  send(downstream.cursorResult(message.id));
}

/**
 * Sends pages until the head, or until `window` pages (or, with the socket's debt, the byte cap)
 * wait for an ack; the stream is then kept for the ack. The attachment is written once, on the
 * way out, with the debt too (a write costs about as much as building a small page).
 *
 * The pull rate limit counts the pull message (`started`: its first page), not each page: a
 * device bootstrapping 200 pages over the socket must not be refused halfway for a rate meant
 * for requests, and the pages of a stream are paced by its acknowledgements and window. Every
 * page is still authorized.
 */
async function streamPages(
  methods: SyncMethods,
  settings: SocketSyncSettings,
  stream: PullStream,
  owed: number,
  write: (patch: SyncAttachment) => void,
  send: Send,
  started: boolean,
) {
  const counted = callerOf(settings, 'read', 'pull');
  const uncounted: SyncCaller = { ...counted, limit: null };
  let caller = started ? counted : uncounted;
  while (stream.unacked.length < stream.window && owed + unackedBytes(stream) < SOCKET_SYNC_LIMITS.maxUnackedBytes) {
    const page = await methods.pull(caller, { cursor: stream.cursor, limit: stream.limit, ...(stream.tables ? { tables: stream.tables } : {}) });
    if (!page.ok) {
      write({ stream: null, owed });
      return send(downstream.error(stream.id, page), page);
    }
    const text = downstream.changes(stream.id, page);
    send(text);
    if (!page.hasMore) {
      write({ stream: null, owed });
      return;
    }
    caller = uncounted;
    stream.cursor = page.nextCursor;
    stream.unacked.push({ cursor: page.nextCursor, bytes: text.length });
  }
  write({ stream, owed });
}
