/**
 * The workspace's realtime sockets (docs/sync.md "Realtime"), kept out of the object's class:
 * accepting upgrades the Worker forwarded, confirming membership from D1, pokes after commits,
 * and closing sockets when access or a session ends; presence (presence.ts) rides on the same
 * sockets. WebSocket Hibernation: idle sockets cost nothing, and what a socket must remember
 * lives in its attachment, never in memory.
 */
import { failureResponse } from '../errors';
import { logEvent } from '../http/logger';
import type { AccessCache } from './access';
import type { ShardCaller } from '../workspace-contract';
import * as downstream from './downstream';
import { claimTicket } from './ticket-nonces';
import {
  admitLargeFrame,
  handleSyncMessage,
  isSyncMessage,
  SCREEN_FRAME_CHARS,
  type SocketSyncSettings,
  type SyncAttachment,
  type SyncMethods,
} from './socket-sync';
import { RESTORING } from './sync-service';
import { armSweep } from './alarm';
import { headVersion } from './meta';
import { Presence, presenceFields, type PresenceAttachment } from './presence';
import type { PokeChanges } from './poke';
import { pull } from './reads';

/** One member cannot take all of the object's WebSocket slots. */
export const MAX_SOCKETS_PER_USER = 20;
/** A poke carries its commit's changes up to this many payload bytes (and twice that in JSON). */
export const POKE_CHANGE_BYTES = 64 * 1024;
/** Above this many distinct users online, a commit touching notifications pokes without changes. */
const POKE_MAX_USERS = 32;
/**
 * The longest a socket's confirmation lets it hear pokes with changes and presence; the bound
 * that applies is the socket's authorization-cache lifetime (OR3_AUTH_CACHE_TTL_SECONDS, 60 s by
 * default) when that is shorter, counted from when the facts were read from D1 (docs/sync.md
 * "Realtime"): a revocation the object never hears of ends everything a socket delivers within it.
 */
export const SOCKET_REVERIFY_MS = 10 * 60 * 1000;

/** What each accepted socket carries through hibernation (presence's fields included). */
interface SocketAttachment extends PresenceAttachment, SyncAttachment {
  sessionId: string | null;
  /** How long a cached membership fact may be trusted (the object's OR3_AUTH_CACHE_TTL_SECONDS when the socket was accepted). */
  cacheTtlMs: number;
}

const attachmentOf = (ws: WebSocket) => ws.deserializeAttachment() as SocketAttachment | null;

/** A frame as JSON, or null (not JSON: presence answers it). */
function parseFrame(data: string | ArrayBuffer): { type?: unknown } | null {
  try {
    return typeof data === 'string' && data.startsWith('{') ? (JSON.parse(data) as { type?: unknown }) : null;
  } catch {
    return null;
  }
}

/** A sync message's type and id as sent, for reporting its failure. */
const messageOf = (parsed: { type?: unknown; id?: unknown }) => ({
  type: String(parsed.type),
  id: typeof parsed.id === 'string' ? parsed.id.slice(0, 64) : null,
});

/** Whether a socket's confirmation still lets it hear changes and presence (see SOCKET_REVERIFY_MS). */
const confirmed = (a: { verifiedAt: number; cacheTtlMs?: number } | null, now: number) =>
  !!a && a.verifiedAt > 0 && now - a.verifiedAt < Math.min(a.cacheTtlMs ?? SOCKET_REVERIFY_MS, SOCKET_REVERIFY_MS);

export class WorkspaceSockets {
  /** Each socket's confirmation in flight (one at a time each). */
  readonly #verifying = new WeakMap<WebSocket, Promise<boolean>>();
  /** Each socket's sync messages in flight, chained. */
  readonly #syncing = new WeakMap<WebSocket, Promise<void>>();
  readonly #presence: Presence;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly access: AccessCache,
    /** The workspace's sync service (sync-service.ts), for sync over the socket (socket-sync.ts). */
    private readonly sync?: SyncMethods,
    /** Told the roster's size (devices) whenever a device publishes: the metrics' presence peak. */
    rosterSize?: (devices: number) => void,
    /** Told of a sync message the server failed (a 5xx answer, or an error thrown): the deployment event (object.ts). */
    private readonly syncFailed?: (failure: { status: number; code: string }, message: { type: string; id: string | null }) => void,
  ) {
    this.#presence = new Presence(ctx, {
      fresh: (a, now) => confirmed(a as SocketAttachment, now),
      reverify: (ws) => this.ctx.waitUntil(this.verify(ws)),
      confirm: (ws) => this.verify(ws),
      armSweep: (at) => armSweep(ctx.storage, at),
      rosterSize,
    });
  }

  /**
   * A WebSocket upgrade the Worker forwarded with the caller's verified credential (`x-or3-*`
   * headers, which the Worker never passes through from clients), authorized here like any
   * request of the workspace (access.ts). A ticket's nonce is recorded here, so it works once.
   */
  async accept(request: Request, restoring: boolean): Promise<Response> {
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket')
      return failureResponse({ status: 426, code: 'upgrade_required', message: 'Expected a WebSocket upgrade' });
    if (restoring) return failureResponse(RESTORING);
    const header = request.headers.get('x-or3-caller');
    if (!header) return failureResponse({ status: 400, code: 'missing_caller', message: 'Missing caller' });
    const caller = JSON.parse(header) as ShardCaller & { sync?: unknown };
    const access = await this.access.authorize(caller);
    if (!access.ok) return failureResponse(access);
    const { userId, sessionId } = access;
    if (this.ctx.getWebSockets(`user:${userId}`).length >= MAX_SOCKETS_PER_USER) {
      return failureResponse({ status: 429, code: 'too_many_sockets', message: `At most ${MAX_SOCKETS_PER_USER} realtime connections per user` });
    }
    const nonce = request.headers.get('x-or3-ticket-nonce');
    if (nonce) {
      const refused = claimTicket(this.ctx.storage, nonce, caller.credential.expiresAt);
      if (refused) return failureResponse({ status: 403, code: 'invalid_ticket', message: refused });
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // Tagged by user and by session, so sign-out and password changes can close exactly theirs.
    this.ctx.acceptWebSocket(server, sessionId ? [`user:${userId}`, `session:${sessionId}`] : [`user:${userId}`]);
    // Presence: the device id the client named (the Worker validated it), and a first sign of life.
    const presence = presenceFields(request.headers.get('x-or3-device-id'));
    // Sync over the socket (socket-sync.ts) when the Worker asked for it: the credential without
    // the token's expiry (the socket outlives the token; revocations close it). Rate limits and
    // the quota are the object's own (settings.ts).
    const { sync: forSync, permission: _read, ...shard } = caller;
    const sync: SocketSyncSettings | undefined = forSync
      ? { caller: { ...shard, credential: { ...shard.credential, expiresAt: Number.MAX_SAFE_INTEGER } }, userId }
      : undefined;
    server.serializeAttachment({
      userId,
      sessionId,
      verifiedAt: 0,
      cacheTtlMs: this.access.cacheTtlMs,
      ...presence,
      ...(sync ? { sync } : {}),
    } satisfies SocketAttachment);
    // `hello` follows once the membership is confirmed from here (see verify).
    this.ctx.waitUntil(this.verify(server));
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Confirms that a socket may still hear the workspace, after it is accepted and whenever its
   * confirmation is older than its bound: the credential it was opened with is authorized again
   * from the authorization cache (access.ts: session live, token version, user not disabled,
   * still a member; every revocation through the API tells the cache, and a lost message is
   * bounded by the cache's lifetime). A removal after this is followed by closeSockets, which now
   * finds the socket; one before it is seen here. Until confirmed, pokes to the socket carry no
   * changes and it hears no presence; a socket whose user is gone is closed with 4003, one whose
   * session or account ended with 4001. The first confirmation sends `hello`; every
   * confirmation sends the presence roster (the socket heard none while unconfirmed).
   * Resolves true when the socket is confirmed now.
   */
  verify(ws: WebSocket): Promise<boolean> {
    // One check at a time per socket; a caller arriving meanwhile waits for the same answer.
    let running = this.#verifying.get(ws);
    if (!running) {
      running = this.#verify(ws).finally(() => this.#verifying.delete(ws));
      this.#verifying.set(ws, running);
    }
    return running;
  }

  async #verify(ws: WebSocket): Promise<boolean> {
    const attachment = attachmentOf(ws);
    const workspaceId = this.ctx.id.name;
    if (!attachment?.userId || !workspaceId) return false;
    try {
      const checkedAt = await this.#check(workspaceId, attachment);
      if (typeof checkedAt !== 'number') {
        ws.close(checkedAt.code, checkedAt.reason);
        this.#presence.left([ws]);
        return false;
      }
      // Read again: presence may have changed the attachment during the D1 read.
      ws.serializeAttachment({ ...(attachmentOf(ws) ?? attachment), verifiedAt: checkedAt } satisfies SocketAttachment);
      if (!attachment.verifiedAt) ws.send(downstream.hello(headVersion(this.ctx.storage.sql)));
      this.#presence.roster(ws);
      return true;
    } catch (err) {
      // D1 unavailable, or the socket closed meanwhile: it stays unconfirmed and is tried again
      // at the next poke.
      logEvent('warn', 'socket_verify_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }

  /** When the facts confirming the socket were read, or how to close it. Throws when it cannot tell (503). */
  async #check(workspaceId: string, attachment: SocketAttachment): Promise<number | { code: number; reason: string }> {
    const caller = attachment.sync?.caller;
    if (!caller) {
      // Accepted without its credential (an attachment from before sockets kept it): membership only.
      const member = await this.access.isMember(attachment.userId, attachment.cacheTtlMs ?? 0);
      return member ? Date.now() : { code: 4003, reason: 'Access to this workspace was revoked' };
    }
    const access = await this.access.authorize({ ...caller, permission: 'read' }, attachment.cacheTtlMs);
    if (access.ok) return access.checkedAt;
    if (access.status === 401) return { code: 4001, reason: 'The session ended; sign in again' };
    if (access.status === 403) return { code: 4003, reason: 'Access to this workspace was revoked' };
    throw new Error(access.message);
  }

  /** Closes the sockets of one user (removed from the workspace) or of everyone (workspace deleted or restoring). */
  close(code: number, reason: string, userId?: string): number {
    if (code === 4003) this.access.forget({ userId }); // access ended: the next request re-reads D1
    const sockets = this.ctx.getWebSockets(userId ? `user:${userId}` : undefined);
    for (const ws of sockets) ws.close(code, reason);
    this.#presence.left(sockets);
    return sockets.length;
  }

  /**
   * Closes the sockets of an ended session (`sessionId`: signed out), or all of a user's (the
   * password changed: every socket was opened with the old token version, the changing
   * session's too). 4001 tells clients to re-authenticate, not that access to the workspace is gone.
   */
  closeSession(input: { userId: string; sessionId?: string }): number {
    // The session ended (sign-out, refresh-token reuse), or the user's token version moved on.
    this.access.forget(input.sessionId ? { sessionId: input.sessionId } : { userId: input.userId });
    const closed: WebSocket[] = [];
    for (const ws of this.ctx.getWebSockets(input.sessionId ? `session:${input.sessionId}` : `user:${input.userId}`)) {
      ws.close(4001, 'The session ended; sign in again');
      closed.push(ws);
    }
    this.#presence.left(closed);
    return closed.length;
  }

  /** A socket closed by its client (or failed, without a code): answer the close (older compatibility dates need it); its device leaves. */
  closed(ws: WebSocket, code?: number, reason?: string) {
    try {
      if (code !== undefined) ws.close(code, reason);
    } catch {
      // Already closed (newer compatibility dates reply to the close frame automatically).
    }
    this.#presence.left([ws]);
  }

  /** A message from a client: sync (socket-sync.ts) or presence (presence.ts); "ping" never gets here (the auto-response answers it). */
  message(ws: WebSocket, data: string | ArrayBuffer): Promise<void> | void {
    const read = () => attachmentOf(ws) ?? {};
    // A large frame can only be a push: who and how often are checked before it is parsed.
    if (typeof data === 'string' && data.length > SCREEN_FRAME_CHARS && this.sync) {
      const sync = this.sync;
      const message = { type: 'push', id: null };
      return this.#inOrder(ws, message, async () => {
        if (ws.readyState !== WebSocket.OPEN) return; // closed for an earlier frame: nothing to answer
        const parsed = await admitLargeFrame(sync, data, read, this.#sender(ws, message), (code, reason) => this.closed(ws, code, reason));
        if (parsed) await this.#sync(ws, parsed);
      });
    }
    const parsed = parseFrame(data);
    if (!parsed || !isSyncMessage(parsed) || !this.sync) return this.#presence.message(ws, data);
    return this.#inOrder(ws, messageOf(parsed), () => this.#sync(ws, parsed));
  }

  /** One socket's sync messages run in the order they came (a push awaits its fingerprints). */
  #inOrder(ws: WebSocket, message: { type: string; id: string | null }, work: () => Promise<void>): Promise<void> {
    const run = (this.#syncing.get(ws) ?? Promise.resolve()).then(work).catch((err: unknown) => {
      logEvent('error', 'socket_sync_failed', { message: err instanceof Error ? err.message : String(err) });
      this.syncFailed?.({ status: 500, code: 'internal_error' }, message);
    });
    this.#syncing.set(ws, run);
    return run;
  }

  /** Sends on `ws`; a refusal that is the server's failure (5xx) is reported too. */
  #sender(ws: WebSocket, message: { type: string; id: string | null }) {
    return (text: string, refused?: { status: number; code: string }) => {
      ws.send(text);
      if (refused && refused.status >= 500) this.syncFailed?.(refused, message);
    };
  }

  #sync(ws: WebSocket, parsed: object): Promise<void> {
    return handleSyncMessage(
      this.sync!,
      parsed,
      () => attachmentOf(ws) ?? {},
      (patch) => ws.serializeAttachment({ ...attachmentOf(ws), ...patch }),
      this.#sender(ws, messageOf(parsed)),
      (code, reason) => {
        ws.close(code, reason);
        this.#presence.left([ws]);
      },
      // This socket's push names it, so its own poke can leave its changes out (see poke).
      ws,
    );
  }

  /** The alarm's presence sweep (alarm.ts): when the next one is due, or null. */
  sweep(): number | null {
    return this.#presence.sweep();
  }

  /**
   * Tells every socket about a commit. When the commit's changes are small they ride along
   * (`fromVersion`, `changes`: what a pull from `fromVersion` would return to that socket's
   * user), so a device whose cursor is `fromVersion` applies them without a pull; otherwise, or
   * with too many users to filter notifications for, the poke is `{ type, serverVersion }` only.
   * `built`: the changes as the push built them from its ops (poke.ts), else they are read back.
   * `pusher`: the socket that pushed and asked not to hear its own changes (docs/sync.md "Sync
   * over the socket"): its push-result says what became of each op, so its poke carries none,
   * whatever the commit's size, and still moves its cursor. Sends are held by the output gate
   * until the commit is durable.
   */
  poke(fromVersion: number, serverVersion: number, perUser: boolean, built: (PokeChanges & { userId: string }) | null = null, pusher?: WebSocket) {
    const sockets = this.ctx.getWebSockets();
    if (!sockets.length) return;
    const plain = downstream.poke(serverVersion);
    const withChanges = (changesJson: string) => downstream.pokeWithChanges(serverVersion, fromVersion, changesJson);
    const now = Date.now();
    // Each socket's user while its membership confirmation is fresh; null: send a plain poke.
    const users = sockets.map((ws) => {
      const attachment = attachmentOf(ws);
      return attachment?.userId && confirmed(attachment, now) ? attachment.userId : null;
    });
    const messages = new Map<string, string>();
    let messageFor: (userId: string) => string;
    if (built) {
      // Built from the ops: one text for the pusher's user (with its notifications), one for everyone else.
      const small = (built.bytes <= POKE_CHANGE_BYTES || built.count === 1) && built.mine.length <= 2 * POKE_CHANGE_BYTES;
      const mine = small ? withChanges(built.mine) : plain;
      const common = !small ? plain : built.common === built.mine ? mine : withChanges(built.common);
      messageFor = (userId) => (userId === built.userId ? mine : common);
    } else {
      const carry = !perUser || new Set(users).size <= POKE_MAX_USERS;
      messageFor = (userId) => {
        if (!carry) return plain;
        // Only notifications differ between users; without any, one page serves every socket.
        const key = perUser ? userId : '';
        let text = messages.get(key);
        if (text === undefined) {
          const page = pull(this.ctx.storage.sql, { cursor: fromVersion, limit: serverVersion - fromVersion, userId }, POKE_CHANGE_BYTES);
          const small = !page.requiresSnapshot && !page.hasMore && page.changesJson.length <= 2 * POKE_CHANGE_BYTES;
          text = small ? withChanges(page.changesJson) : plain;
          messages.set(key, text);
        }
        return text;
      };
    }
    for (const [i, ws] of sockets.entries()) {
      try {
        const userId = users[i] ?? null;
        if (userId === null) {
          ws.send(plain);
          this.ctx.waitUntil(this.verify(ws));
        } else if (ws === pusher && built) {
          ws.send(withChanges('[]'));
        } else {
          ws.send(messageFor(userId));
        }
      } catch {
        // A socket closing as we send: it will be cleaned up by its close event.
      }
    }
  }
}
