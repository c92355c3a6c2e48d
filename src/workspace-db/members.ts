/**
 * The workspace's members, with the object as their authority (docs/architecture.md "Members
 * live with their workspace"). The access cache reads roles here (access.ts), never D1. A change
 * is written here first, with an outbox entry in the same transaction; then the copies follow:
 * D1's `members` rows (admin queries, search, invite claims) and each member's user object
 * (their "my workspaces" list, src/user-db/workspaces.ts). A copy that fails stays queued and is
 * retried by the next change, by the object's next start, or by the repair route; nothing is
 * ever in a copy that the authority does not say, once the outbox is empty.
 *
 * The members are seeded lazily from D1 on the object's first need (one batch, once): existing
 * workspaces keep their members through the upgrade, and a new workspace (D1 writes its row and
 * owner in one batch, which must count the creator's recent creations there) takes them the
 * same way.
 */
import { devD1 } from '../dev/d1-delay';
import { devCopyPause } from '../dev/copy-pause';
import type { Bindings } from '../env';
import { logEvent } from '../http/logger';
import type { Role } from '../workspace-records/permissions';
import { readWorkspaceCopy, writeMemberCopies, type WorkspaceInfo } from '../workspace-records/member-copy';
import * as roster from './roster';
import type { RosterChange, RosterOutcome } from './roster';

/** Users copied per flush round: one D1 batch and that many user-object calls. */
const FLUSH_BATCH = 100;
/** Flush rounds per call: a rename of a 10,000-member workspace finishes in later calls. */
const FLUSH_ROUNDS = 20;

export interface RosterHooks {
  /** The access cache drops what it holds about the user (or everyone): the change applies to the next request. */
  forget(input: { userId?: string }): void;
  /** Closes the sockets of a user who lost access (or of everyone). */
  closeSockets(userId?: string): void;
}

export interface RepairReport {
  /** Members the authority had that D1's copy lacked or had with another role. */
  copied: number;
  /** Rows D1's copy had that the authority did not: removed from the copy. */
  dropped: number;
  /** Rows D1 wrote first whose adoption was lost (an invite accepted, a crash before the object heard): taken into the authority. */
  adopted: number;
  /** Users whose user object was told their membership again. */
  told: number;
}

export class MemberRoster {
  #seeding: Promise<void> | undefined;
  /** Flushes run one after another, so the state a user object hears last is the latest. */
  #flushing: Promise<unknown> = Promise.resolve();
  #resumed = false;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Bindings,
    private readonly hooks: RosterHooks,
  ) {}

  get #sql(): SqlStorage {
    return this.ctx.storage.sql;
  }

  get #workspaceId(): string {
    const name = this.ctx.id.name;
    if (!name) throw new Error('WorkspaceDO must be addressed by workspace id (getByName)');
    return name;
  }

  /** The user's role in this (live) workspace, or null. No D1 query once seeded. */
  async role(userId: string): Promise<Role | null> {
    await this.#ready();
    return roster.roleOf(this.#sql, userId);
  }

  /** The members and the workspace's state (the repair route's answer, tests). */
  async view(): Promise<{ state: roster.RosterState; members: { userId: string; role: Role }[]; pending: number }> {
    await this.#ready();
    return { state: roster.readState(this.#sql), members: roster.allMembers(this.#sql), pending: roster.outboxSize(this.#sql) };
  }

  /**
   * A change to the members: written here (the authority) with its outbox entry, then copied
   * (D1, the user's object); the access cache forgets the user and a member who lost access is
   * disconnected. Answers once the copies followed, or failed and stayed queued.
   */
  async change(change: RosterChange): Promise<RosterOutcome> {
    await this.#ready();
    const { outcome, changed } = this.ctx.storage.transactionSync(() => roster.apply(this.#sql, change, Date.now()));
    if (changed) {
      this.hooks.forget({ userId: change.userId });
      if (change.op === 'remove') this.hooks.closeSockets(change.userId);
    }
    if (changed && change.op === 'remove') await devCopyPause(this.env); // development only: the window a crash test kills the server in
    await this.flush();
    return outcome;
  }

  /** Several changes in one transaction, then one copy (import `member` lines). */
  async changeMany(changes: RosterChange[]): Promise<RosterOutcome[]> {
    await this.#ready();
    const results = this.ctx.storage.transactionSync(() => changes.map((c) => roster.apply(this.#sql, c, Date.now())));
    this.hooks.forget({});
    await this.flush();
    return results.map((r) => r.outcome);
  }

  /**
   * D1's workspace row changed (renamed, deleted, restored): the object takes it, forgets every
   * cached role, and tells each member's user object. Deletion closes every socket.
   */
  async setInfo(info: WorkspaceInfo | null): Promise<void> {
    await this.#ready();
    const before = roster.readState(this.#sql);
    this.ctx.storage.transactionSync(() => {
      const now = Date.now();
      roster.writeState(this.#sql, info, now);
      roster.enqueue(
        this.#sql,
        roster.allMembers(this.#sql).map((m) => m.userId),
        false,
        now,
      );
    });
    this.hooks.forget({});
    if ((!info || info.deleted) && before.present && !before.deleted) this.hooks.closeSockets();
    await this.flush();
  }

  /**
   * Reconciles D1's copy (and the members' user objects) with the authority. D1 rows the
   * authority lacks are adopted when D1 wrote them after the user's last removal here (a lost
   * adoption), else dropped from the copy; every member is copied and told again. `userId`:
   * that user only.
   */
  async repair(userId?: string): Promise<RepairReport> {
    await this.#ready();
    const copy = await readWorkspaceCopy(devD1(this.env), this.#workspaceId);
    const report: RepairReport = { copied: 0, dropped: 0, adopted: 0, told: 0 };
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      const sql = this.#sql;
      roster.writeState(sql, copy.info, now);
      const inCopy = new Map(copy.members.filter((m) => !userId || m.userId === userId).map((m) => [m.userId, m]));
      for (const row of inCopy.values()) {
        if (roster.memberRole(sql, row.userId)) continue;
        const removed = roster.removedAt(sql, row.userId);
        if (removed === null || removed < row.updatedAt) {
          roster.apply(sql, { op: 'adopt', userId: row.userId, role: row.role, since: row.updatedAt }, now);
          report.adopted++;
        } else {
          roster.enqueue(sql, [row.userId], true, now);
          report.dropped++;
        }
      }
      const members = roster.allMembers(sql).filter((m) => !userId || m.userId === userId);
      for (const m of members) if (inCopy.get(m.userId)?.role !== m.role) report.copied++;
      roster.enqueue(
        sql,
        members.map((m) => m.userId),
        true,
        now,
      );
      if (userId && !roster.memberRole(sql, userId)) roster.enqueue(sql, [userId], true, now);
    });
    this.hooks.forget(userId ? { userId } : {});
    report.told = await this.flush();
    return report;
  }

  /**
   * Copies what the outbox holds: D1 first (one batch per round), then each user's object. An
   * entry leaves the outbox only when both took it. Never throws. Returns the users delivered.
   */
  flush(): Promise<number> {
    const run = this.#flushing.then(() => this.#flushRounds());
    this.#flushing = run.catch(() => undefined);
    return run.catch(() => 0);
  }

  async #flushRounds(): Promise<number> {
    let delivered = 0;
    for (let round = 0; round < FLUSH_ROUNDS; round++) {
      const entries = roster.pending(this.#sql, FLUSH_BATCH);
      if (!entries.length) break;
      const done = await this.#flushOnce(entries);
      delivered += done;
      if (done < entries.length) break; // something failed: the rest waits for the next attempt
    }
    return delivered;
  }

  async #flushOnce(entries: roster.OutboxEntry[]): Promise<number> {
    const workspaceId = this.#workspaceId;
    const sql = this.#sql;
    const state = roster.readState(sql);
    const rows = entries.map((e) => ({ ...e, member: roster.memberRow(sql, e.userId) }));
    const now = Date.now();
    try {
      await writeMemberCopies(
        devD1(this.env),
        workspaceId,
        rows.filter((r) => r.copy).map((r) => ({ userId: r.userId, role: r.member?.role ?? null, createdAt: r.member?.createdAt ?? now })),
        now,
      );
    } catch (err) {
      logEvent('warn', 'member_copy_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
      return 0;
    }
    const told = await Promise.all(
      rows.map((r) =>
        this.env.USER_DB.getByName(r.userId)
          .workspaceChanged({
            workspaceId,
            role: state.present && r.member ? r.member.role : null,
            name: state.name,
            description: state.description,
            createdAt: state.createdAt,
            deleted: state.deleted,
          })
          .then(() => r)
          .catch((err: unknown) => {
            logEvent('warn', 'member_notify_failed', { workspaceId, message: err instanceof Error ? err.message : String(err) });
            return null;
          }),
      ),
    );
    const ok = told.filter((r) => r !== null);
    this.ctx.storage.transactionSync(() => roster.delivered(sql, ok));
    return ok.length;
  }

  /** Seeds from D1 once; after a restart, resumes copies an interrupted change left queued. */
  async #ready(): Promise<void> {
    if (!roster.seeded(this.#sql)) {
      this.#seeding ??= this.#seed().finally(() => (this.#seeding = undefined));
      await this.#seeding;
    }
    if (!this.#resumed) {
      this.#resumed = true;
      if (roster.outboxSize(this.#sql)) this.ctx.waitUntil(this.flush());
    }
  }

  async #seed(): Promise<void> {
    const copy = await readWorkspaceCopy(devD1(this.env), this.#workspaceId);
    this.ctx.storage.transactionSync(() => {
      if (!roster.seeded(this.#sql)) roster.seed(this.#sql, copy.info, copy.members, Date.now());
    });
  }
}
