/**
 * Applying a validated import stream (docs/admin.md "Import"), in stream order and in batches:
 * users, members, invites, history through the workspace object's replay, state items that beat
 * the current winner, and file records. Every step is conditional, so a second run changes nothing.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { sha256Hex, storedHashMatches } from '../crypto';
import { normalizeEmail } from '../auth/store';
import { parseHash } from '../../protocol/hashes';
import { blobKey } from '../storage/blob-keys';
import { checkStoredOp, entryBytes, fingerprintText, REFERENCING_TABLES, referencedHashes } from '../../protocol/rules';
import type { ImportedItem, ImportOutcome } from '../workspace-db/imports';
import type { CommitInput, CommitOutcome } from '../workspace-db/blobs';
import type { AdminCaller } from '../workspace-contract';
import type { ArchivedEntry } from '../workspace-db/history-archive';
import { importInvites, importMembers, importUsers, type ImportedUser, type InviteImport, type MemberImport } from '../admin/store';
import { IMPORT_LIMITS, type Line, type Parsed } from './import-lines';
import { applyMemberChanges } from '../workspace-records/member-writes';
import type { Role } from '../workspace-records/permissions';

export interface Skipped {
  line: number;
  type: string;
  key: string;
  reason: string;
}

export interface ImportReport {
  ok: true;
  dryRun: boolean;
  workspaceId: string | null;
  workspaceCreated: boolean;
  lines: number;
  /** `linked`: identities linked to existing accounts the operator confirmed (each also in `notes`). */
  users: { created: number; unchanged: number; linked: number };
  members: { added: number; updated: number; unchanged: number };
  invites: { added: number; unchanged: number };
  changes: { applied: number; unchanged: number };
  rows: { applied: number; unchanged: number };
  tombstones: { applied: number; unchanged: number };
  files: { recorded: number; unchanged: number };
  /** Lines of each type in the stream. */
  counts: Record<string, number>;
  notes: string[];
  skippedCount: number;
  /** The first `IMPORT_LIMITS.reportedSkips` skipped items, with the reason. */
  skipped: Skipped[];
  serverVersion: number | null;
}

/** Accumulates the report. */
export function newReport(dryRun: boolean): ImportReport {
  return {
    ok: true,
    dryRun,
    workspaceId: null,
    workspaceCreated: false,
    lines: 0,
    users: { created: 0, unchanged: 0, linked: 0 },
    members: { added: 0, updated: 0, unchanged: 0 },
    invites: { added: 0, unchanged: 0 },
    changes: { applied: 0, unchanged: 0 },
    rows: { applied: 0, unchanged: 0 },
    tombstones: { applied: 0, unchanged: 0 },
    files: { recorded: 0, unchanged: 0 },
    counts: {},
    notes: [],
    skippedCount: 0,
    skipped: [],
    serverVersion: null,
  };
}

export function skip(report: ImportReport, item: Skipped) {
  report.skippedCount++;
  if (report.skipped.length < IMPORT_LIMITS.reportedSkips) report.skipped.push(item);
}

/** The two object methods an import uses (typed here: RPC's mapped types are too deep for these). */
interface ImportTarget {
  importHistory(entries: ArchivedEntry[], items: ImportedItem[]): Promise<ImportOutcome>;
  commitBlob(caller: AdminCaller, input: CommitInput & { hex: string; verify: 'checked' }): Promise<CommitOutcome>;
}

const withoutServerFields = (p: Record<string, unknown>) => {
  if (!('hlc' in p) && !('ref_count' in p)) return p;
  const { hlc: _h, ref_count: _r, ...rest } = p;
  return rest;
};

type BatchKind = 'sync' | 'users' | 'members' | 'invites' | null;

/** The apply pass: batches of each kind, flushed in stream order. */
export class Applier {
  #entries: { n: number; entry: ArchivedEntry }[] = [];
  #items: { n: number; item: ImportedItem }[] = [];
  #bytes = 0;
  #users: { n: number; user: ImportedUser }[] = [];
  #members: { n: number; member: { userId: string; role: string; createdAt: number } }[] = [];
  #invites: { n: number; invite: Parameters<typeof importInvites>[2][number] }[] = [];
  #kind: BatchKind = null;

  constructor(
    private readonly c: Context<AppEnv>,
    private readonly report: ImportReport,
    private readonly target: string | null,
    private readonly actorId: string,
    private readonly exportedBy: string | undefined,
    /** Existing accounts the operator confirmed identities may be linked to (the `linkExisting` query). */
    private readonly linkExisting: ReadonlySet<string> = new Set(),
  ) {}

  get #ws(): ImportTarget {
    return this.c.env.WORKSPACE.getByName(this.target!) as unknown as ImportTarget;
  }

  async add(n: number, parsed: Parsed) {
    if (parsed.skip) {
      skip(this.report, { line: n, type: parsed.type, key: parsed.key, reason: parsed.skip });
      return;
    }
    const now = Date.now();
    switch (parsed.type) {
      case 'user': {
        await this.#switch('users');
        const l = parsed.line;
        this.#users.push({
          n,
          user: {
            id: l.id,
            email: l.email ? normalizeEmail(l.email) : null,
            displayName: l.displayName || null,
            passwordHash: l.passwordHash ?? null,
            identities: (l.identities ?? []).map((i) => ({ provider: i.provider, issuer: i.issuer, subject: i.subject, email: i.email ?? null })),
            createdAt: l.createdAt ?? now,
          },
        });
        if (this.#users.length >= IMPORT_LIMITS.d1Batch) await this.#flush();
        return;
      }
      case 'member':
        await this.#switch('members');
        this.#members.push({ n, member: { userId: parsed.line.userId, role: parsed.line.role, createdAt: parsed.line.createdAt ?? now } });
        if (this.#members.length >= IMPORT_LIMITS.d1Batch) await this.#flush();
        return;
      case 'invite': {
        await this.#switch('invites');
        const l = parsed.line;
        this.#invites.push({
          n,
          invite: { id: l.id, role: l.role, tokenHash: l.tokenHash, createdBy: l.createdBy, createdAt: l.createdAt ?? now, expiresAt: l.expiresAt },
        });
        if (this.#invites.length >= IMPORT_LIMITS.d1Batch) await this.#flush();
        return;
      }
      case 'change':
        await this.#switch('sync');
        if (this.#items.length) await this.#flush(); // history before the state items that follow it
        await this.#addChange(n, parsed.line);
        return;
      case 'row':
      case 'tombstone':
        await this.#switch('sync');
        await this.#addItem(n, parsed.type, parsed.line);
        return;
      case 'file':
        await this.#switch(null);
        await this.#file(n, parsed.line);
        return;
      default:
        await this.#switch(null);
    }
  }

  async #switch(kind: BatchKind) {
    if (this.#kind !== kind) await this.#flush();
    this.#kind = kind;
  }

  /** The user a change or item is credited to: given, or a notification's owner, or whoever exported or imports it. */
  #userOf(tableName: string, given: string | undefined, payloadValue: Record<string, unknown> | null | undefined): string {
    if (given) return given;
    if (tableName === 'notifications' && typeof payloadValue?.user_id === 'string') return payloadValue.user_id;
    return this.exportedBy ?? this.actorId;
  }

  async #addChange(n: number, l: Line<'change'>) {
    const stored = l.op === 'put' ? withoutServerFields(l.payload!) : null;
    const check = checkStoredOp(l.tableName, l.pk, l.op === 'put' ? l.payload! : null, this.target!);
    if (!check.ok) return; // flagged in the validation pass already
    const fingerprint =
      l.fingerprint ?? (await sha256Hex(fingerprintText(l.tableName, l.op, l.pk, l.op === 'put' ? check.canonical : 'null', l.clock, l.hlc, l.deviceId)));
    const entry: ArchivedEntry = {
      serverVersion: 0,
      opId: l.opId,
      tableName: l.tableName,
      pk: l.pk,
      op: l.op,
      payload: stored,
      clock: l.clock,
      hlc: l.hlc,
      deviceId: l.deviceId,
      userId: this.#userOf(l.tableName, l.userId, l.payload),
      fingerprint,
      createdAt: l.createdAt ?? Date.now(),
    };
    this.#entries.push({ n, entry });
    this.#bytes += check.stored?.length ?? 0;
    if (this.#entries.length >= IMPORT_LIMITS.batchItems || this.#bytes >= IMPORT_LIMITS.batchBytes) await this.#flush();
  }

  async #addItem(n: number, kind: 'row' | 'tombstone', l: Line<'row'> | Line<'tombstone'>) {
    const value = kind === 'row' ? (l as Line<'row'>).payload : null;
    const check = checkStoredOp(l.tableName, l.pk, value, this.target!);
    if (!check.ok) return;
    const { clock, hlc, opId } = l.revision;
    const deviceId = l.deviceId ?? '';
    const live = value !== null && !(value.deleted === true || value.deleted === 1);
    const item: ImportedItem = {
      kind,
      tableName: check.table,
      pk: l.pk,
      payload: check.stored,
      clock,
      hlc,
      opId,
      deviceId,
      userId: this.#userOf(l.tableName, l.userId, value),
      fingerprint: await sha256Hex(fingerprintText(l.tableName, kind === 'row' ? 'put' : 'delete', l.pk, check.canonical, clock, hlc, deviceId)),
      fileHashes: REFERENCING_TABLES.has(l.tableName) && kind === 'row' ? (live ? referencedHashes(value?.file_hashes) : []) : null,
      bytes: entryBytes(check.stored, l.pk, hlc, deviceId),
      deletedAt: kind === 'tombstone' && (l as Line<'tombstone'>).serverDeletedAt !== undefined ? (l as Line<'tombstone'>).serverDeletedAt! * 1000 : null,
    };
    this.#items.push({ n, item });
    this.#bytes += check.stored?.length ?? 0;
    if (this.#items.length >= IMPORT_LIMITS.batchItems || this.#bytes >= IMPORT_LIMITS.batchBytes) await this.#flush();
  }

  async #file(n: number, l: Line<'file'>) {
    const hash = parseHash(l.hash)!;
    const objectKey = blobKey(this.target!, hash);
    const bucket = this.c.env.BLOBS;
    const head = await bucket.head(objectKey);
    const reason = !head
      ? `no object at ${objectKey}: upload the blob first (the file record follows it)`
      : head.size !== l.size_bytes
        ? `the object has ${head.size} bytes, the record says ${l.size_bytes}`
        : head.customMetadata?.verified !== 'sha256' && !(await storedHashMatches(bucket, objectKey, hash.hex))
          ? 'the object does not match its hash'
          : null;
    if (reason) return skip(this.report, { line: n, type: 'file', key: l.hash, reason });
    // The stored bytes were checked above (with the import's own reasons); a deployment admin imports.
    const outcome = await this.#ws.commitBlob(
      { workspaceId: this.target!, admin: this.actorId },
      {
        hash: hash.canonical,
        hex: hash.hex,
        verify: 'checked',
        sizeBytes: l.size_bytes,
        mimeType: l.mime_type,
        storageKey: objectKey,
        name: l.name ?? null,
        kind: l.kind ?? null,
      },
    );
    if (!outcome.ok) return skip(this.report, { line: n, type: 'file', key: l.hash, reason: outcome.message });
    if (outcome.charged > 0) this.report.files.recorded++;
    else this.report.files.unchanged++;
  }

  async #flush() {
    const report = this.report;
    if (this.#users.length) {
      const batch = this.#users.splice(0);
      const results = await importUsers(
        this.c.env.DB,
        batch.map((b) => b.user),
        this.linkExisting,
      );
      results.forEach((r, i) => {
        const { n, user } = batch[i]!;
        if (r.outcome === 'email_taken') {
          skip(report, { line: n, type: 'user', key: user.id, reason: `the email ${user.email} belongs to another user here (${r.existingUserId})` });
          return;
        }
        report.users[r.outcome]++;
        for (const taken of r.identities.taken) skip(report, { line: n, type: 'user', key: user.id, reason: taken });
        // An existing account's identities are never linked unconfirmed (docs/security.md "Import").
        for (const unconfirmed of r.identities.unconfirmed) skip(report, { line: n, type: 'user', key: user.id, reason: unconfirmed });
        if (r.outcome === 'unchanged' && r.identities.added > 0) {
          report.users.linked += r.identities.added;
          report.notes.push(`line ${n}: ${r.identities.added} identities linked to the existing user ${user.id}, as the operator confirmed (linkExisting)`);
        }
      });
    }
    if (this.#members.length) {
      const batch = this.#members.splice(0);
      const results = await importMembers(
        this.c.env.DB,
        this.target!,
        batch.map((b) => b.member),
      );
      results.forEach((r: MemberImport, i) => {
        if (r === 'no_user') skip(report, { line: batch[i]!.n, type: 'member', key: batch[i]!.member.userId, reason: 'no such user in this deployment' });
        else report.members[r]++;
      });
      // Written through the workspace's object, the members' authority, which drops the cached
      // roles and makes D1's copy follow (docs/security.md "Import").
      const writes = batch.flatMap((b, i) => (results[i] === 'added' || results[i] === 'updated' ? [{ b, was: results[i] as 'added' | 'updated' }] : []));
      const outcomes = await applyMemberChanges(
        this.c.env,
        this.target!,
        writes.map(({ b }) => ({ op: 'upsert', userId: b.member.userId, role: b.member.role as Role, createdAt: b.member.createdAt })),
      );
      // The object may refuse a line D1 took (demoting the last owner): it is reported skipped,
      // and D1's copy is put back to the authority's members for that user (rare, one call each).
      for (const [j, outcome] of outcomes.entries()) {
        if (outcome === 'ok') continue;
        const { b, was } = writes[j]!;
        report.members[was]--;
        skip(report, {
          line: b.n,
          type: 'member',
          key: b.member.userId,
          reason: outcome === 'last_owner' ? 'the workspace would be left without an owner' : outcome,
        });
        await this.c.env.WORKSPACE.getByName(this.target!).repairMembers(b.member.userId);
      }
    }
    if (this.#invites.length) {
      const batch = this.#invites.splice(0);
      const results = await importInvites(
        this.c.env.DB,
        this.target!,
        batch.map((b) => b.invite),
      );
      const why: Record<Exclude<InviteImport, 'added' | 'unchanged'>, string> = {
        expired: 'expired',
        no_creator: 'its creator is not a user in this deployment',
        token_taken: 'another invite has the same token',
      };
      results.forEach((r, i) => {
        if (r === 'added' || r === 'unchanged') report.invites[r]++;
        else skip(report, { line: batch[i]!.n, type: 'invite', key: batch[i]!.invite.id, reason: why[r] });
      });
    }
    if (this.#entries.length || this.#items.length) {
      const entries = this.#entries.splice(0);
      const items = this.#items.splice(0);
      this.#bytes = 0;
      const outcome = await this.#ws.importHistory(
        entries.map((e) => e.entry),
        items.map((i) => i.item),
      );
      report.changes.applied += outcome.changes.applied;
      report.changes.unchanged += outcome.changes.unchanged;
      for (const refused of outcome.changes.refused) {
        const at = entries.find((e) => e.entry.opId === refused.opId);
        skip(report, { line: at?.n ?? 0, type: 'change', key: `${at?.entry.tableName}/${at?.entry.pk} ${refused.opId}`, reason: refused.reason });
      }
      for (const kind of ['rows', 'tombstones'] as const) {
        report[kind].applied += outcome.state[kind].applied;
        report[kind].unchanged += outcome.state[kind].unchanged;
      }
      for (const refused of outcome.state.refused) {
        const at = items.find((i) => i.item.tableName === refused.tableName && i.item.pk === refused.pk);
        skip(report, { line: at?.n ?? 0, type: at?.item.kind ?? 'row', key: `${refused.tableName}/${refused.pk}`, reason: refused.reason });
      }
      report.serverVersion = outcome.serverVersion;
    }
  }

  finish() {
    return this.#switch(null);
  }
}
