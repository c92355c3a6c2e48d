/**
 * Authorization at the shard (docs/architecture.md "Authorization at the shard"): the Worker
 * verifies a credential statelessly and hands it to the workspace's object, which decides with
 * the facts it holds here — session liveness, the user's token version and disabled flag, the
 * federated identity's user, and the user's role in this workspace — read on a miss (a session's
 * and a user's facts from the user's object, src/user-db/; the role from this workspace's own
 * members, members.ts, their authority; a federated identity's user from the identity's object,
 * src/identity-db/) and kept for
 * at most OR3_AUTH_CACHE_TTL_SECONDS, from the object's own configuration (settings.ts).
 * Every write that changes these facts tells the objects concerned (`forget`), and a fact whose
 * invalidation was lost is re-read once its time is up. So a steady stream of requests costs no
 * D1 query, and nothing deployment-wide sits on the path.
 *
 * The cache is in memory only: an evicted object starts empty and refills on demand, which can
 * only make it fresher. A failed fill (the user's object or D1 unreachable) fails closed (503); cached facts keep serving
 * until their time is up.
 */
import { identityObject, identityOf } from '../identity-db/link';
import type { Bindings } from '../env';
import type { Failure } from '../errors';
import { logEvent } from '../http/logger';
import { can, type Role } from '../workspace-records/permissions';
import type { Access, Credential, ShardCaller } from '../workspace-contract';

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
  /** A federated identity's user id: fixed for the identity's life, so kept past the cache lifetime (bounded). */
  readonly #identities = new Map<string, string>();
  /** Bumped by every invalidation: a fill that started before it must not store what it read. */
  #epoch = 0;

  /**
   * `roleOf`: the user's role from the workspace's own members (members.ts), the authority: no D1
   * query. `settings`: the cache lifetime and auto-provisioning, from the object's own
   * configuration (settings.ts), not sent with each call.
   */
  constructor(
    private readonly env: Bindings,
    private readonly roleOf: (userId: string) => Promise<Role | null>,
    private readonly settings: () => { cacheTtlMs: number; autoProvision: boolean },
  ) {}

  /** How long a fact read here is trusted (OR3_AUTH_CACHE_TTL_SECONDS, the object's own configuration). */
  get cacheTtlMs(): number {
    return this.settings().cacheTtlMs;
  }

  /**
   * The caller's access to the workspace for `caller.permission`, or why not (401, 403, 503).
   * `cacheTtlMs`: a shorter trust for this check than the configured lifetime (a socket's own).
   */
  async authorize(caller: ShardCaller, cacheTtlMs = this.settings().cacheTtlMs, now = Date.now()): Promise<({ ok: true } & Access) | Failure> {
    const { credential } = caller;
    if (credential.expiresAt <= now) return unauthorized('The credential has expired');
    const key = keyOf(credential);
    let facts = this.#fresh(this.#principals.get(key), cacheTtlMs, now);
    let role = facts?.userId ? this.#fresh(this.#roles.get(facts.userId), cacheTtlMs, now) : undefined;
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
  async isMember(userId: string, cacheTtlMs = this.settings().cacheTtlMs, now = Date.now()): Promise<boolean> {
    const cached = this.#roles.get(userId);
    if (cached && now - cached.fetchedAt < cacheTtlMs) return cached.role !== null;
    const epoch = this.#epoch;
    const role = await this.roleOf(userId);
    if (epoch === this.#epoch) remember(this.#roles, userId, { role, fetchedAt: now });
    return role !== null;
  }

  /**
   * Drops what is known about a user (their role, and every session and identity of theirs) or
   * one session, or everything: the next request of theirs reads the facts again. Called after the
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

  #fresh<T extends { fetchedAt: number }>(entry: T | undefined, cacheTtlMs: number, now: number): T | undefined {
    return entry && now - entry.fetchedAt < cacheTtlMs ? entry : undefined;
  }

  /** Its user's object and this workspace's members, no D1; a federated identity's user from its identity's object, once per object. */
  async #fill(caller: ShardCaller, now: number): Promise<{ facts: PrincipalFacts; role: { role: Role | null; fetchedAt: number } }> {
    const { credential, workspaceId } = caller;
    const epoch = this.#epoch;
    let facts: PrincipalFacts;
    let role: Role | null;
    if (credential.kind === 'ticket' && !credential.sessionId) {
      // A federated user's ticket: no session to check, but the user (disabled?) from their
      // object and the role from this workspace's members.
      const [user, member] = await Promise.all([this.env.USER_DB.getByName(credential.userId).check({ workspaceId }), this.roleOf(credential.userId)]);
      role = member;
      facts = {
        userId: user.present ? credential.userId : null,
        liveUntil: Number.POSITIVE_INFINITY,
        tokenVersion: 0,
        disabled: user.disabled,
        fetchedAt: now,
      };
    } else if (credential.kind !== 'federated') {
      // The session and the user's facts from the user's object (src/user-db/), which records
      // this workspace so that sign-out, password change and disabling reach this cache; the
      // role from this workspace's own members, in parallel. No D1 query.
      const [session, member] = await Promise.all([
        this.env.USER_DB.getByName(credential.userId).check({ sessionId: credential.sessionId!, workspaceId }),
        this.roleOf(credential.userId),
      ]);
      facts = {
        userId: session.present ? credential.userId : null,
        liveUntil: session.liveUntil,
        tokenVersion: session.tokenVersion,
        disabled: session.disabled,
        fetchedAt: now,
      };
      role = member;
    } else {
      const identity = identityOf(credential);
      // Which user an identity belongs to never changes (only deleting the account removes the
      // identity, and then the user's object answers "absent"): the identity's object answers
      // the first time (it read D1 once per identity ever), and this object keeps the user id,
      // so later fills ask the user's object directly, like a session's. No D1 query.
      const key = keyOf(credential);
      const known = this.#identities.get(key);
      let user: { userId: string; present: boolean; disabled: boolean } | null;
      if (known !== undefined) {
        const [checked, member] = await Promise.all([this.env.USER_DB.getByName(known).check({ workspaceId }), this.roleOf(known)]);
        user = { userId: known, ...checked };
        role = member;
        if (!checked.present) this.#identities.delete(key); // deleted: the next fill asks the identity's object again
      } else {
        const autoProvision = this.settings().autoProvision;
        user = await (await identityObject(this.env, identity)).check({ identity, autoProvision, workspaceId });
        if (user) remember(this.#identities, key, user.userId);
        role = user?.present ? await this.roleOf(user.userId) : null;
      }
      facts = {
        userId: user?.present ? user.userId : null,
        liveUntil: Number.POSITIVE_INFINITY,
        tokenVersion: 0,
        disabled: user ? user.disabled : true,
        fetchedAt: now,
      };
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
