/**
 * UserDO: one Durable Object per user (named by the user id), the authority for their sessions
 * and refresh-token families and the keeper of the facts authorization needs
 * (docs/architecture.md "Sessions live with their user"). Refresh, sign-out, password change's
 * revocations and session checks are calls here: no D1 query. The RPC surface only; the SQL is
 * in sessions.ts and facts.ts, the D1 reads in legacy.ts. Hashing happens before each
 * `transactionSync`, so every change is one synchronous step nothing interleaves with.
 */
import { DurableObject } from 'cloudflare:workers';
import { randomToken, sha256Hex } from '../crypto';
import { devD1 } from '../dev/d1-delay';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import { FACTS_SCHEMA, factsOf, readFacts, readProfile, watch, watchers, writeFacts, writeProfile, type UserFacts, type UserProfile } from './facts';
import type { Role } from '../workspace-records/permissions';
import { markMoved, readFactsRow, readLegacy } from './legacy';
import * as sessions from './sessions';
import { childSecret, childTokenId, formatRefreshToken } from './tokens';
import { listWorkspaces } from '../workspace-records/store';
import * as mine from './workspaces';

/** What a workspace object (or the Worker) learns about a session: its end and the user's facts. */
export interface SessionFacts extends UserFacts {
  /** The session's end (ms); 0 when revoked or unknown. */
  liveUntil: number;
}

export interface RotateRequest {
  tokenId: string;
  secret: string;
  /** Keys for deriving child secrets, current first; a previous key still serves grace retries. */
  serverKeys: string[];
  refreshTtlMs: number;
  graceMs: number;
  maxPerMinute?: number;
  /** A token without a user id (issued before the move), whose owner the Worker read from D1. */
  legacy?: boolean;
}

export type RotateReply =
  | { ok: true; sessionId: string; tokenVersion: number; refreshToken: string }
  | { ok: false; reason: 'invalid' | 'expired' | 'revoked' | 'rate_limited' }
  | { ok: false; reason: 'reused'; sessionId: string };

/** `principal`'s answer: `membership` only when a workspace was asked about (null: not a member of a live one). */
export interface SessionPrincipal extends SessionFacts {
  profile: UserProfile;
  membership?: { name: string; role: Role } | null;
}

/** How often a miss (a token or session not here) may look for sessions an older release left in D1. */
const RESCAN_MS = 60_000;

export class UserDO extends DurableObject<Bindings> {
  readonly #sql = this.ctx.storage.sql;
  #loading: Promise<void> | undefined;
  #lastScan = 0;
  /** Fact reloads run one after another, so the last one applied is the last one read. */
  #reloads: Promise<unknown> = Promise.resolve();
  #listSeeding: Promise<void> | undefined;
  /** Workspaces whose notice arrived while the list was being seeded from D1. */
  #noticed: Set<string> | undefined;

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.#sql.exec(sessions.SCHEMA + FACTS_SCHEMA + mine.WORKSPACES_SCHEMA);
  }

  get #userId(): string {
    const name = this.ctx.id.name;
    if (!name) throw new Error('UserDO must be addressed by user id (getByName)');
    return name;
  }

  /** Starts a session (sign-in); the caller has checked the password or identity in D1. */
  async createSession(input: { refreshTtlMs: number; userAgent: string | null }): Promise<{ sessionId: string; refreshToken: string; tokenVersion: number }> {
    const facts = await this.#facts();
    const sessionId = crypto.randomUUID();
    const tokenId = crypto.randomUUID();
    const secret = randomToken();
    const secretHash = await sha256Hex(secret);
    const now = Date.now();
    const { revoked } = this.ctx.storage.transactionSync(() => sessions.createSession(this.#sql, { sessionId, tokenId, secretHash, ...input, now }));
    for (const id of revoked) await this.#tell({ sessionId: id });
    return { sessionId, refreshToken: formatRefreshToken(this.#userId, tokenId, secret), tokenVersion: facts.tokenVersion };
  }

  /** Rotates a refresh token (sessions.ts `rotate`); a reuse has revoked the family and closed its sockets when this returns. */
  async rotate(request: RotateRequest): Promise<RotateReply> {
    // A token naming a user whose object was never used cannot be ours: no D1 read for it.
    if (!request.legacy && !this.#known()) return { ok: false, reason: 'invalid' };
    const facts = await this.#facts();
    const secretHash = await sha256Hex(request.secret);
    const childId = await childTokenId(request.tokenId);
    const children = await Promise.all(
      request.serverKeys.map(async (key) => {
        const secret = await childSecret(key, request.tokenId, request.secret);
        return { secret, hash: await sha256Hex(secret) };
      }),
    );
    const input = {
      tokenId: request.tokenId,
      secretHash,
      childId,
      children,
      refreshTtlMs: request.refreshTtlMs,
      graceMs: request.graceMs,
      maxPerMinute: request.maxPerMinute ?? sessions.REFRESH_ROTATIONS_PER_MINUTE,
      disabled: facts.disabled || !facts.present,
    };
    const run = () => this.ctx.storage.transactionSync(() => sessions.rotate(this.#sql, { ...input, now: Date.now() }));
    let outcome = run();
    if (!outcome.ok && outcome.reason === 'invalid' && !sessions.knowsToken(this.#sql, request.tokenId) && (await this.#rescan())) outcome = run();
    if (outcome.ok) {
      return {
        ok: true,
        sessionId: outcome.sessionId,
        tokenVersion: facts.tokenVersion,
        refreshToken: formatRefreshToken(this.#userId, outcome.childId, outcome.secret),
      };
    }
    if (outcome.reason === 'reused') await this.#tell({ sessionId: outcome.sessionId });
    return outcome;
  }

  /** Ends one session, named by id (an access token) or by one of its refresh tokens; the session ended, or null. */
  async signOut(input: { sessionId: string } | { tokenId: string; secret: string; legacy?: boolean }): Promise<string | null> {
    if ('tokenId' in input && !input.legacy && !this.#known()) return null;
    await this.#facts();
    const secretHash = 'secret' in input ? await sha256Hex(input.secret) : '';
    const find = () => ('sessionId' in input ? input.sessionId : sessions.sessionOfToken(this.#sql, input.tokenId, secretHash));
    let sessionId = find();
    const missing = 'sessionId' in input ? sessions.sessionEnd(this.#sql, input.sessionId) === null : !sessions.knowsToken(this.#sql, input.tokenId);
    if (missing && (await this.#rescan())) sessionId = find();
    if (!sessionId) return null;
    const id = sessionId;
    const ended = this.ctx.storage.transactionSync(() => sessions.revokeSession(this.#sql, id, Date.now()));
    if (ended) await this.#tell({ sessionId: id });
    return id;
  }

  /**
   * Re-reads the user's facts from D1 after a write there changed them (password change, token
   * version bump, disabling, enabling, the admin flag), ends sessions when asked (`endSessions`:
   * all, or all but `except`), and tells every workspace that caches the user's facts.
   */
  async reloadFacts(input: { endSessions?: { except?: string } } = {}): Promise<UserFacts> {
    await this.#facts();
    const run = this.#reloads.then(async () => {
      const row = await readFactsRow(devD1(this.env), this.#userId);
      const facts = factsOf(row);
      const now = Date.now();
      this.ctx.storage.transactionSync(() => {
        writeFacts(this.#sql, facts, now);
        writeProfile(this.#sql, row, now);
        if (input.endSessions) sessions.revokeAll(this.#sql, now, input.endSessions.except ?? null);
      });
      return facts;
    });
    this.#reloads = run.catch(() => undefined);
    const facts = await run;
    await this.#tell({});
    return facts;
  }

  /**
   * A session's liveness with the user's facts. `workspaceId`: the workspace object asking to
   * fill its cache, recorded so that a later change reaches it.
   */
  async check(input: { sessionId?: string; workspaceId?: string }): Promise<SessionFacts> {
    const facts = await this.#facts();
    const { sessionId, workspaceId } = input;
    let end = sessionId ? sessions.sessionEnd(this.#sql, sessionId) : 0;
    if (sessionId && end === null && (await this.#rescan())) end = sessions.sessionEnd(this.#sql, sessionId);
    if (workspaceId) watch(this.#sql, workspaceId, Date.now());
    return { ...facts, liveUntil: end ?? 0 };
  }

  /**
   * Who a request is, for the routes that resolve a principal (src/auth/authenticate.ts): the
   * session's liveness and the facts, the profile, and with `workspaceId` the user's membership
   * there from their list of workspaces. No D1 query once the object knows the user.
   */
  async principal(input: { sessionId?: string; workspaceId?: string }): Promise<SessionPrincipal> {
    const checked = await this.check({ sessionId: input.sessionId });
    let profile = readProfile(this.#sql);
    if (!profile) {
      // An object made before the profile was kept: read once.
      const row = await readFactsRow(devD1(this.env), this.#userId);
      this.ctx.storage.transactionSync(() => writeProfile(this.#sql, row, Date.now()));
      profile = readProfile(this.#sql)!;
    }
    if (input.workspaceId === undefined) return { ...checked, profile };
    await this.workspaces();
    return { ...checked, profile, membership: mine.membershipIn(this.#sql, input.workspaceId) };
  }

  /**
   * Re-reads the profile (email, display name, active workspace) after a D1 write changed only
   * it: one D1 read, and no socket is closed (nothing authorization needs changed).
   */
  async reloadProfile(): Promise<UserProfile> {
    await this.#facts();
    const row = await readFactsRow(devD1(this.env), this.#userId);
    this.ctx.storage.transactionSync(() => writeProfile(this.#sql, row, Date.now()));
    return readProfile(this.#sql)!;
  }

  /** The user's membership of one live workspace from their list (the session endpoint), or null. */
  async membershipOf(workspaceId: string): Promise<{ name: string; role: Role } | null> {
    await this.workspaces();
    return mine.membershipIn(this.#sql, workspaceId);
  }

  /** The user's sessions, most recently used first (live and recently ended). */
  async listSessions(): Promise<sessions.SessionView[]> {
    await this.#facts();
    return sessions.listSessions(this.#sql);
  }

  /** The account was deleted: everything here goes, and the workspaces that cached it are told. */
  async erase(): Promise<void> {
    const targets = watchers(this.#sql, Date.now());
    await this.#tell({}, targets);
    await this.ctx.storage.deleteAll();
    this.#sql.exec(sessions.SCHEMA + FACTS_SCHEMA + mine.WORKSPACES_SCHEMA);
  }

  /**
   * A workspace's object says how the user's membership there now stands (after writing it, its
   * authority): "my workspaces" follows with no D1 query (workspaces.ts).
   */
  workspaceChanged(notice: mine.WorkspaceNotice): void {
    this.#noticed?.add(notice.workspaceId);
    this.ctx.storage.transactionSync(() => mine.applyNotice(this.#sql, notice, Date.now()));
  }

  /** The user's live workspaces with their roles, newest first; seeded from D1's copy on first use (once). */
  async workspaces(): Promise<mine.MyWorkspace[]> {
    if (!mine.listSeeded(this.#sql)) {
      this.#listSeeding ??= this.#seedList().finally(() => (this.#listSeeding = undefined));
      await this.#listSeeding;
    }
    return mine.liveWorkspaces(this.#sql);
  }

  /** The workspaces the list names, live or deleted (the user repair route). */
  listedWorkspaceIds(): string[] {
    return mine.listedWorkspaceIds(this.#sql);
  }

  async #seedList(): Promise<void> {
    this.#noticed = new Set();
    try {
      const rows = await listWorkspaces(devD1(this.env), this.#userId, null);
      const noticed = this.#noticed;
      // A notice that arrived while D1 was read is newer than what D1 said.
      this.ctx.storage.transactionSync(() =>
        mine.seedList(
          this.#sql,
          rows.filter((r) => !noticed.has(r.id)),
          Date.now(),
        ),
      );
    } finally {
      this.#noticed = undefined;
    }
  }

  /** Whether this object was ever used (its facts loaded). */
  #known(): boolean {
    return readFacts(this.#sql) !== undefined;
  }

  /** The stored facts; on the object's first use, loads them and the user's legacy D1 sessions (once). */
  async #facts(): Promise<UserFacts> {
    const stored = readFacts(this.#sql);
    if (stored) return stored;
    this.#loading ??= this.#importLegacy().finally(() => (this.#loading = undefined));
    await this.#loading;
    return readFacts(this.#sql)!;
  }

  async #importLegacy(): Promise<void> {
    const now = Date.now();
    const legacy = await readLegacy(devD1(this.env), this.#userId, now);
    this.#lastScan = now;
    this.ctx.storage.transactionSync(() => {
      for (const s of legacy.sessions) sessions.insertSession(this.#sql, s);
      for (const t of legacy.tokens) sessions.insertToken(this.#sql, t);
      if (!readFacts(this.#sql)) writeFacts(this.#sql, factsOf(legacy.facts), now);
      if (!readProfile(this.#sql)) writeProfile(this.#sql, legacy.facts, now);
    });
    await markMoved(
      devD1(this.env),
      legacy.sessions.map((s) => s.id),
      now,
    );
  }

  /**
   * A token or session this object does not know may be one an older release (still running
   * somewhere during a deploy) created in D1 after the first move: looks again, at most once a
   * minute. Whether anything was moved.
   */
  async #rescan(): Promise<boolean> {
    const now = Date.now();
    if (now - this.#lastScan < RESCAN_MS) return false;
    this.#lastScan = now;
    const legacy = await readLegacy(devD1(this.env), this.#userId, now);
    if (!legacy.sessions.length) return false;
    this.ctx.storage.transactionSync(() => {
      for (const s of legacy.sessions) sessions.insertSession(this.#sql, s);
      for (const t of legacy.tokens) sessions.insertToken(this.#sql, t);
    });
    await markMoved(
      devD1(this.env),
      legacy.sessions.map((s) => s.id),
      now,
    );
    return true;
  }

  /**
   * Tells each workspace that caches this user's facts to drop them and close the affected
   * sockets (4001): one session's, or (no `sessionId`) all of the user's. Never throws: the change
   * has happened here; a lost message is bounded by the workspace cache's lifetime.
   */
  async #tell(input: { sessionId?: string }, targets = watchers(this.#sql, Date.now())): Promise<void> {
    const userId = this.#userId;
    await Promise.all(
      targets.map((workspaceId) =>
        this.env.WORKSPACE.getByName(workspaceId)
          .closeSessionSockets({ userId, ...input })
          .catch((err: unknown) => logEvent('warn', 'socket_close_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) })),
      ),
    );
  }
}
