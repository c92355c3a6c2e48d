/**
 * Authorization at the shard (docs/architecture.md "Authorization at the shard"): the Worker
 * verifies a credential statelessly and hands it to the workspace's object, which decides with
 * the facts it holds here — session liveness, the user's token version and disabled flag, the
 * federated identity's user, and the user's role in this workspace — read from D1 on a miss and
 * kept for at most `ttlMs`. D1 stays the source of truth: every write that changes these facts
 * tells the objects concerned (`forget`), and a fact whose invalidation was lost is re-read once
 * its time is up. So a steady stream of requests costs no D1 query, and nothing deployment-wide
 * sits on the path.
 *
 * The cache is in memory only: an evicted object starts empty and refills on demand, which can
 * only make it fresher. A D1 failure during a fill fails closed (503); cached facts keep serving
 * until their time is up.
 */
import { loadSessionAuth, loadUserAuth } from '../auth/sessions';
import { identityUser } from '../auth/store';
import { devD1 } from '../dev-d1-delay';
import type { Bindings } from '../env';
import type { LimitedCall } from '../limiter';
import type { Failure } from '../errors';
import { logEvent } from '../http/logger';
import { can, type Permission, type Role } from '../workspaces/permissions';
import { membershipOf } from '../workspaces/store';

/** What the Worker verified about the caller, without D1: our access JWT's claims, or a federated identity. */
export type Credential =
  | { kind: 'session'; userId: string; sessionId: string; tokenVersion: number; expiresAt: number }
  | { kind: 'federated'; provider: string; issuer: string; subject: string; email: string | null; displayName: string | null; expiresAt: number }
  /** A single-use WebSocket ticket (src/sync/ws-ticket.ts): its user, and its session when it has one. */
  | { kind: 'ticket'; userId: string; sessionId: string | null; expiresAt: number };

/** A credential from an access or federated token (what `verifyCredential` yields in the Worker). */
export type TokenCredential = Exclude<Credential, { kind: 'ticket' }>;

/** A sync request: who (verified, to authorize at the object) and which rate limit it counts against. */
export type SyncCaller = ShardCaller & LimitedCall;

/** A request as the object authorizes it. */
export interface ShardCaller {
  workspaceId: string;
  credential: Credential;
  permission: Permission;
  /** How long a fact read from D1 may be trusted (OR3_AUTH_CACHE_TTL_SECONDS). */
  cacheTtlMs: number;
  /** Whether a federated identity seen for the first time gets a user (OR3_AUTH_AUTO_PROVISION). */
  autoProvision: boolean;
}

export interface Access {
  userId: string;
  role: Role;
  /** Our session (basic auth), or null for a federated principal. */
  sessionId: string | null;
  /**
   * When the oldest fact this answer used was read from D1: an open socket may deliver what this
   * answer allows only until `checkedAt` + the cache's lifetime (sockets.ts), so a revocation
   * made behind the object's back ends everything a socket delivers within that bound.
   */
  checkedAt: number;
}

/** Facts about who a credential is: a session's, or a federated identity's. */
interface PrincipalFacts {
  userId: string | null;
  /** The session's end (ms), revoked sessions as 0; Infinity for a federated identity. */
  liveUntil: number;
  tokenVersion: number;
  disabled: boolean;
  fetchedAt: number;
}

/** Entries per map: a busy workspace's members and sessions fit many times over; past it, the oldest go. */
const MAX_ENTRIES = 5_000;

const unauthorized = (message: string): Failure => ({ ok: false, status: 401, code: 'unauthorized', message });
const unavailable: Failure = {
  ok: false,
  status: 503,
  code: 'auth_unavailable',
  message: 'Authorization data is unavailable right now; try again shortly',
  retryAfter: 2,
};

function keyOf(credential: Credential): string {
  if (credential.kind === 'federated') return `f:${credential.provider}\u0000${credential.issuer}\u0000${credential.subject}`;
  return credential.sessionId ? `s:${credential.sessionId}` : `u:${credential.userId}`;
}

function remember<V>(map: Map<string, V>, key: string, value: V) {
  map.delete(key); // re-inserted last: the Map's order is its age
  map.set(key, value);
  if (map.size > MAX_ENTRIES) map.delete(map.keys().next().value!);
}

export class AccessCache {
  readonly #principals = new Map<string, PrincipalFacts>();
  readonly #roles = new Map<string, { role: Role | null; fetchedAt: number }>();
  /** Bumped by every invalidation: a fill that started before it must not store what it read. */
  #epoch = 0;
  /** D1 reads made, for tests and the bench (a steady state makes none). */
  d1Reads = 0;

  constructor(private readonly env: Bindings) {}

  /** The D1 binding, read at each use (a bench may slow it down in development: dev-d1-delay.ts). */
  get #db(): D1Database {
    return devD1(this.env);
  }

  /** The caller's access to the workspace for `caller.permission`, or why not (401, 403, 503). */
  async authorize(caller: ShardCaller, now = Date.now()): Promise<({ ok: true } & Access) | Failure> {
    const { credential } = caller;
    if (credential.expiresAt <= now) return unauthorized('The credential has expired');
    const key = keyOf(credential);
    let facts = this.#fresh(this.#principals.get(key), caller, now);
    let role = facts?.userId ? this.#fresh(this.#roles.get(facts.userId), caller, now) : undefined;
    // A token newer than what we hold (a password change minted it) is worth one re-read.
    const stale = facts && credential.kind === 'session' && credential.tokenVersion > facts.tokenVersion;
    if (!facts || stale || (facts.userId && !role)) {
      try {
        ({ facts, role } = await this.#fill(caller, now));
      } catch (err) {
        logEvent('error', 'auth_fill_failed', { workspaceId: caller.workspaceId, message: err instanceof Error ? err.message : String(err) });
        return unavailable;
      }
    }
    if (!facts.userId || facts.disabled || facts.liveUntil <= now) return unauthorized('Authentication required');
    if (credential.kind !== 'federated' && credential.userId !== facts.userId) return unauthorized('Authentication required');
    if (credential.kind === 'session' && credential.tokenVersion !== facts.tokenVersion) return unauthorized('Authentication required');
    if (!role?.role) return { ok: false, status: 403, code: 'not_member', message: 'You are not a member of this workspace' };
    if (!can(role.role, caller.permission)) {
      return { ok: false, status: 403, code: 'insufficient_role', message: `Your role (${role.role}) does not allow ${caller.permission}` };
    }
    return {
      ok: true,
      userId: facts.userId,
      role: role.role,
      sessionId: credential.kind === 'federated' ? null : credential.sessionId,
      checkedAt: Math.min(facts.fetchedAt, role.fetchedAt),
    };
  }

  /** Whether `userId` still belongs to the workspace (a socket's periodic re-confirmation), from the cache when fresh. */
  async isMember(workspaceId: string, userId: string, cacheTtlMs: number, now = Date.now()): Promise<boolean> {
    const cached = this.#roles.get(userId);
    if (cached && now - cached.fetchedAt < cacheTtlMs) return cached.role !== null;
    const epoch = this.#epoch;
    this.d1Reads++;
    const membership = await membershipOf(this.#db, workspaceId, userId);
    if (epoch === this.#epoch) remember(this.#roles, userId, { role: membership?.role ?? null, fetchedAt: now });
    return membership !== null;
  }

  /**
   * Drops what is known about a user (their role, and every session and identity of theirs) or
   * one session, or everything: the next request of theirs re-reads D1. Called after the D1
   * write that changed the facts (member removed or role changed, workspace deleted, sign-out,
   * password change, refresh-token reuse).
   */
  forget(input: { userId?: string; sessionId?: string } = {}) {
    this.#epoch++;
    if (!input.userId && !input.sessionId) {
      this.#principals.clear();
      this.#roles.clear();
      return;
    }
    if (input.sessionId) this.#principals.delete(`s:${input.sessionId}`);
    if (input.userId) {
      this.#roles.delete(input.userId);
      for (const [key, facts] of this.#principals) if (facts.userId === input.userId) this.#principals.delete(key);
    }
  }

  #fresh<T extends { fetchedAt: number }>(entry: T | undefined, caller: ShardCaller, now: number): T | undefined {
    return entry && now - entry.fetchedAt < caller.cacheTtlMs ? entry : undefined;
  }

  /** One read of D1 for a session (session, user and membership in one query), two for a federated identity. */
  async #fill(caller: ShardCaller, now: number): Promise<{ facts: PrincipalFacts; role: { role: Role | null; fetchedAt: number } }> {
    const { credential, workspaceId } = caller;
    const epoch = this.#epoch;
    let facts: PrincipalFacts;
    let role: Role | null;
    if (credential.kind === 'ticket' && !credential.sessionId) {
      // A federated user's ticket: no session to check, but the user (disabled?) and the
      // membership, in one read.
      this.d1Reads++;
      const row = await loadUserAuth(this.#db, credential.userId, workspaceId);
      role = (row?.member_role as Role | null | undefined) ?? null;
      facts = {
        userId: row ? credential.userId : null,
        liveUntil: Number.POSITIVE_INFINITY,
        tokenVersion: 0,
        disabled: row ? row.disabled_at !== null : true,
        fetchedAt: now,
      };
    } else if (credential.kind !== 'federated') {
      this.d1Reads++;
      const row = await loadSessionAuth(this.#db, credential.sessionId!, credential.userId, workspaceId);
      facts = {
        userId: row?.id ?? null,
        liveUntil: !row || row.session_revoked_at !== null ? 0 : row.session_expires_at,
        tokenVersion: row?.token_version ?? -1,
        disabled: row ? row.disabled_at !== null : true,
        fetchedAt: now,
      };
      role = (row?.member_role as Role | null | undefined) ?? null;
    } else {
      const identity = {
        provider: credential.provider,
        issuer: credential.issuer,
        subject: credential.subject,
        email: credential.email,
        displayName: credential.displayName,
      };
      this.d1Reads++;
      const user = await identityUser(this.#db, identity, caller.autoProvision);
      facts = {
        userId: user?.id ?? null,
        liveUntil: Number.POSITIVE_INFINITY,
        tokenVersion: 0,
        disabled: user ? user.disabled_at !== null : true,
        fetchedAt: now,
      };
      this.d1Reads += user ? 1 : 0;
      role = user ? ((await membershipOf(this.#db, workspaceId, user.id))?.role ?? null) : null;
    }
    const roleEntry = { role, fetchedAt: now };
    // An invalidation that arrived while we read may have been about what we read: use it for
    // this request (it was true when read), but do not keep it.
    if (epoch === this.#epoch) {
      remember(this.#principals, keyOf(credential), facts);
      if (facts.userId) remember(this.#roles, facts.userId, roleEntry);
    }
    return { facts, role: roleEntry };
  }
}
