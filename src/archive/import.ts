/**
 * `POST /api/admin/import` (docs/admin.md "Import"): recreates a workspace from the JSONL an
 * export produces (src/archive/export.ts), plus two line types only an admin's import carries:
 * `user` (accounts with their password hash and federated identities) and `invite` (pending
 * invites by token hash). An owner's export never holds either.
 *
 * The body is never held in memory. It is staged into R2 as it arrives (Content-Length is
 * required, and bounded), then read line by line twice:
 * 1. validation: JSON, line types, fields, the format version, one header first and one `end`
 *    last (a stream cut off has none). Any fault answers 400 naming the line, before anything is
 *    written. Lines that are well formed but cannot be applied (a payload breaking its table's
 *    rules, a legacy md5 file, an unknown password-hash format) are reported as skipped.
 * 2. apply, in batches and in stream order: the workspace (D1) if absent, users, members (only
 *    users that exist here), invites, history through the workspace object's replay (opIds are
 *    kept, so a replayed change allocates nothing), state items that beat the current winner,
 *    and file records for blobs whose object is already in R2.
 * Every step is conditional, so importing the same stream twice changes nothing the second time,
 * and a run cut off midway and repeated ends where one run would have.
 */
import type { Context } from 'hono';
import * as z from 'zod';
import type { AppEnv } from '../env';
import { ApiError, badRequest, payloadTooLarge } from '../errors';
import { sha256Hex } from '../crypto';
import { describeIssues } from '../http/body';
import { isBcryptHash, parseHash as parsePasswordHash } from '../auth/passwords';
import { normalizeEmail } from '../auth/store';
import { ROLES } from '../workspaces/permissions';
import { blobKey, parseHash, storedHashMatches } from '../storage/hashes';
import { mimeType } from '../storage/routes';
import { checkStoredOp, entryBytes, fingerprintText, REFERENCING_TABLES, referencedHashes, type TableName } from '../sync/protocol';
import type { ImportedItem, ImportOutcome } from '../workspace-db/imports';
import type { CommitInput, CommitOutcome } from '../workspace-db/blobs';
import type { ArchivedEntry } from './archive';
import { EXPORT_FORMAT } from './export';
import {
  ensureImportedWorkspace,
  ensureOwner,
  importInvites,
  importMembers,
  importUsers,
  type ImportedUser,
  type InviteImport,
  type MemberImport,
} from '../admin/store';

export const IMPORT_LIMITS = {
  /** One import request (the platform's request body limit, 100 MB on most plans, may come first: split larger streams, as the CLI does). */
  maxBytes: 2 * 1024 * 1024 * 1024,
  /** One line: a 256 KB payload, escaped, fits several times over. */
  maxLineBytes: 4 * 1024 * 1024,
  /** History entries and state items per call to the workspace object (and their payload bytes). */
  batchItems: 200,
  batchBytes: 4 * 1024 * 1024,
  /** Users, members or invites per D1 batch. */
  d1Batch: 50,
  /** Skipped items listed in the report (all are counted). */
  reportedSkips: 1000,
} as const;

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const text = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !LONE_SURROGATE.test(s), 'must be valid Unicode text');
const id = z.string().regex(ID, 'must be 1-128 letters, digits, - or _');
const int = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const payload = z.record(z.string(), z.unknown());
const key = text(1, 256);
const revision = z.looseObject({ clock: int, hlc: text(0, 512), opId: key });
const tableName = z.string().min(1).max(64);

/** The line types; unknown fields are allowed (a newer export may add some), unknown types are not. */
const LINES = {
  header: z.looseObject({
    type: z.literal('header'),
    format: z.string(),
    workspaceId: id.nullable(),
    name: z.string().trim().min(1).max(100).optional(),
    description: z.string().max(1000).nullable().optional(),
    createdAt: int.optional(),
    exportedBy: z.string().max(128).optional(),
  }),
  member: z.looseObject({ type: z.literal('member'), userId: id, role: z.enum(ROLES), createdAt: int.optional() }),
  change: z.looseObject({
    type: z.literal('change'),
    opId: key,
    tableName,
    pk: key,
    op: z.enum(['put', 'delete']),
    payload: payload.nullable().optional(),
    clock: int,
    hlc: text(0, 512),
    deviceId: text(0, 256),
    userId: id.optional(),
    fingerprint: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    createdAt: int.optional(),
  }),
  row: z.looseObject({ type: z.literal('row'), tableName, pk: key, payload, revision, deviceId: text(0, 256).optional(), userId: id.optional() }),
  tombstone: z.looseObject({
    type: z.literal('tombstone'),
    tableName,
    pk: key,
    revision,
    serverDeletedAt: int.optional(),
    deviceId: text(0, 256).optional(),
    userId: id.optional(),
  }),
  file: z.looseObject({
    type: z.literal('file'),
    hash: z.string().min(1).max(80),
    size_bytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    mime_type: mimeType,
    name: z.string().max(1024).nullable().optional(),
    kind: z.string().min(1).max(32).nullable().optional(),
  }),
  user: z.looseObject({
    type: z.literal('user'),
    id,
    email: z.string().trim().min(3).max(320).nullable().optional(),
    displayName: z.string().trim().max(100).nullable().optional(),
    passwordHash: z.string().max(200).nullable().optional(),
    identities: z
      .array(z.looseObject({ provider: text(1, 64), issuer: text(1, 512), subject: text(1, 256), email: z.string().max(320).nullable().optional() }))
      .max(20)
      .optional(),
    createdAt: int.optional(),
  }),
  invite: z.looseObject({
    type: z.literal('invite'),
    id,
    role: z.enum(ROLES),
    tokenHash: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest'),
    createdBy: id,
    createdAt: int.optional(),
    expiresAt: int,
  }),
  end: z.looseObject({ type: z.literal('end'), changes: int.optional(), items: int.optional(), members: int.optional(), files: int.optional() }),
} as const;

type LineType = keyof typeof LINES;
type Line<T extends LineType> = z.output<(typeof LINES)[T]>;

export const importQuery = z.strictObject({
  workspaceId: id.optional(),
  name: z.string().trim().min(1).max(100).optional(),
  dryRun: z.enum(['true', 'false']).optional(),
});

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
  users: { created: number; unchanged: number };
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

const invalidStream = (line: number, why: string) => new ApiError(400, 'invalid_import', `line ${line}: ${why}`);

/** The text lines of a byte stream (1-based numbers), never holding more than one line and one chunk. */
async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<{ n: number; text: string }> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      let at: number;
      while ((at = buffer.indexOf('\n')) >= 0) {
        yield { n: ++n, text: buffer.slice(0, at) };
        buffer = buffer.slice(at + 1);
      }
      if (buffer.length > IMPORT_LIMITS.maxLineBytes) throw invalidStream(n + 1, `longer than ${IMPORT_LIMITS.maxLineBytes} bytes`);
    }
  } finally {
    reader.releaseLock();
  }
  if (buffer.length) yield { n: ++n, text: buffer };
}

interface Context0 {
  /** Where the stream goes: the query's workspace, else the header's; null for a stream of users only. */
  target: string | null;
  queryWorkspaceId: string | undefined;
}

/** One parsed line, or a skip (well formed, but it cannot be applied). */
type Parsed = { [T in LineType]: { type: T; line: Line<T>; skip?: string; key: string } }[LineType];

function parseLine(n: number, raw: string, state: { header: Line<'header'> | null; ctx: Context0 }): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw invalidStream(n, 'not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { type?: unknown }).type !== 'string')
    throw invalidStream(n, 'a line must be a JSON object with a "type"');
  const type = (value as { type: string }).type;
  if (!(type in LINES)) throw invalidStream(n, `unknown line type "${type.slice(0, 40)}"`);
  if (!state.header && type !== 'header') throw invalidStream(n, 'the first line must be the header');
  if (state.header && type === 'header') throw invalidStream(n, 'a second header');
  const parsed = LINES[type as LineType].safeParse(value);
  if (!parsed.success) throw invalidStream(n, `${type}: ${describeIssues(parsed.error.issues)}`);
  const line = parsed.data as Line<LineType>;
  if (type === 'header') {
    const header = line as Line<'header'>;
    if (header.format !== EXPORT_FORMAT) throw invalidStream(n, `unsupported format "${header.format.slice(0, 60)}" (this server reads ${EXPORT_FORMAT})`);
    state.header = header;
    state.ctx.target = state.ctx.queryWorkspaceId ?? header.workspaceId;
    return { type: 'header', line: header, key: '' };
  }
  const target = state.ctx.target;
  if (target === null && type !== 'user' && type !== 'end') throw invalidStream(n, `a stream with no workspace holds only user lines, not "${type}"`);
  switch (type) {
    case 'change': {
      const l = line as Line<'change'>;
      if (l.op === 'put' && !l.payload) throw invalidStream(n, 'change: a put needs a payload');
      const check = checkStoredOp(l.tableName, l.pk, l.op === 'put' ? l.payload! : null, target!);
      return { type, line: l, key: `${l.tableName}/${l.pk} ${l.opId}`, ...(check.ok ? {} : { skip: check.problem }) };
    }
    case 'row': {
      const l = line as Line<'row'>;
      const check = checkStoredOp(l.tableName, l.pk, l.payload, target!);
      return { type, line: l, key: `${l.tableName}/${l.pk}`, ...(check.ok ? {} : { skip: check.problem }) };
    }
    case 'tombstone': {
      const l = line as Line<'tombstone'>;
      const check = checkStoredOp(l.tableName, l.pk, null, target!);
      return { type, line: l, key: `${l.tableName}/${l.pk}`, ...(check.ok ? {} : { skip: check.problem }) };
    }
    case 'file': {
      const l = line as Line<'file'>;
      const hash = parseHash(l.hash);
      const skip = !hash
        ? 'not a hash this server stores (sha256:<64 hex>)'
        : hash.algorithm !== 'sha256'
          ? 'a legacy md5 file needs no record: it is served once its object is in R2'
          : undefined;
      return { type, line: l, key: l.hash, ...(skip ? { skip } : {}) };
    }
    case 'user': {
      const l = line as Line<'user'>;
      const h = l.passwordHash;
      let skip: string | undefined;
      if (h && !isBcryptHash(h)) {
        try {
          parsePasswordHash(h);
        } catch {
          skip = 'unsupported password hash format (bcrypt $2a$/$2b$/$2y$ or this server scrypt)';
        }
      }
      return { type, line: l, key: l.id, ...(skip ? { skip } : {}) };
    }
    case 'member':
      return { type, line: line as Line<'member'>, key: (line as Line<'member'>).userId };
    case 'invite':
      return { type, line: line as Line<'invite'>, key: (line as Line<'invite'>).id };
    default:
      return { type: 'end', line: line as Line<'end'>, key: '' };
  }
}

/**
 * Reads a whole stream, checking every line; throws 400 naming the first bad line. Calls
 * `each` with every line in order (the apply pass), skipped lines included, flagged.
 */
async function readStream(body: ReadableStream<Uint8Array>, ctx: Context0, each: (n: number, parsed: Parsed) => Promise<void> | void): Promise<number> {
  const state = { header: null as Line<'header'> | null, ctx };
  const counts: Record<string, number> = {};
  let ended: Line<'end'> | null = null;
  let last = 0;
  for await (const { n, text } of readLines(body)) {
    last = n;
    if (text.trim() === '') continue;
    if (ended) throw invalidStream(n, 'content after the end line');
    const parsed = parseLine(n, text, state);
    counts[parsed.type] = (counts[parsed.type] ?? 0) + 1;
    if (parsed.type === 'end') {
      ended = parsed.line;
      const says: [string, number | undefined, number][] = [
        ['changes', ended.changes, counts.change ?? 0],
        ['items', ended.items, (counts.row ?? 0) + (counts.tombstone ?? 0)],
        ['members', ended.members, counts.member ?? 0],
        ['files', ended.files, counts.file ?? 0],
      ];
      for (const [what, said, seen] of says) {
        if (said !== undefined && said !== seen) throw invalidStream(n, `the end line counts ${said} ${what}, the stream holds ${seen}`);
      }
    }
    await each(n, parsed);
  }
  if (!state.header) throw invalidStream(1, 'empty stream: no header');
  if (!ended) throw invalidStream(last + 1, 'the stream ends without its end line (cut off?)');
  return last;
}

/** Accumulates the report. */
function newReport(dryRun: boolean): ImportReport {
  return {
    ok: true,
    dryRun,
    workspaceId: null,
    workspaceCreated: false,
    lines: 0,
    users: { created: 0, unchanged: 0 },
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

function skip(report: ImportReport, item: Skipped) {
  report.skippedCount++;
  if (report.skipped.length < IMPORT_LIMITS.reportedSkips) report.skipped.push(item);
}

/** The two object methods an import uses (typed here: RPC's mapped types are too deep for these). */
interface ImportTarget {
  importHistory(entries: ArchivedEntry[], items: ImportedItem[]): Promise<ImportOutcome>;
  commitBlob(input: CommitInput, quotaBytes: number): Promise<CommitOutcome>;
}

const withoutServerFields = (p: Record<string, unknown>) => {
  if (!('hlc' in p) && !('ref_count' in p)) return p;
  const { hlc: _h, ref_count: _r, ...rest } = p;
  return rest;
};

type BatchKind = 'sync' | 'users' | 'members' | 'invites' | null;

/** The apply pass: batches of each kind, flushed in stream order. */
class Applier {
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
    const config = this.c.get('config');
    const outcome = await this.#ws.commitBlob(
      {
        hash: hash.canonical,
        sizeBytes: l.size_bytes,
        mimeType: l.mime_type,
        storageKey: objectKey,
        providerId: 'r2',
        name: l.name ?? null,
        kind: l.kind ?? null,
      },
      config.storage.workspaceQuotaBytes,
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
      );
      results.forEach((r, i) => {
        const { n, user } = batch[i]!;
        if (r.outcome === 'email_taken') {
          skip(report, { line: n, type: 'user', key: user.id, reason: `the email ${user.email} belongs to another user here (${r.existingUserId})` });
          return;
        }
        report.users[r.outcome]++;
        for (const taken of r.identities.taken) skip(report, { line: n, type: 'user', key: user.id, reason: taken });
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

/** A streamed body as a fixed-length stream R2 can store, or 411/413. */
function declaredLength(c: Context<AppEnv>): number {
  const declared = c.req.header('content-length');
  if (declared === undefined || !/^\d+$/.test(declared)) throw new ApiError(411, 'length_required', 'An import needs a Content-Length header');
  const length = Number(declared);
  if (length > IMPORT_LIMITS.maxBytes) throw payloadTooLarge(`An import may be at most ${IMPORT_LIMITS.maxBytes} bytes; split the stream`);
  if (length === 0 || !c.req.raw.body) throw badRequest('The import stream is empty', 'invalid_import');
  return length;
}

/**
 * Runs an import: validates and (unless a dry run) applies the stream, and returns the report.
 * A dry run reads the body once, straight from the request, and writes nothing.
 */
export async function runImport(c: Context<AppEnv>, query: z.output<typeof importQuery>, actorId: string): Promise<ImportReport> {
  const dryRun = query.dryRun === 'true';
  const length = declaredLength(c);
  const report = newReport(dryRun);
  const ctx: Context0 = { target: null, queryWorkspaceId: query.workspaceId };
  if (dryRun) {
    report.lines = await readStream(c.req.raw.body!, ctx, (n, parsed) => {
      report.counts[parsed.type] = (report.counts[parsed.type] ?? 0) + 1;
      if (parsed.skip) skip(report, { line: n, type: parsed.type, key: parsed.key, reason: parsed.skip });
    });
    report.workspaceId = ctx.target;
    return report;
  }

  // Stage the body in R2 as it arrives (a FixedLengthStream makes R2 refuse a body shorter than declared).
  const bucket = c.env.BLOBS;
  const stagingKey = `imports/v1/${crypto.randomUUID()}.jsonl`;
  try {
    try {
      const { readable, writable } = new FixedLengthStream(length);
      const [, staged] = await Promise.all([c.req.raw.body!.pipeTo(writable), bucket.put(stagingKey, readable)]);
      if (!staged) throw new Error('not stored');
    } catch {
      throw badRequest(`The body ended before its Content-Length (${length} bytes): the stream was cut off`, 'invalid_import');
    }
    const object = async () => {
      const o = await bucket.get(stagingKey);
      if (!o) throw new Error('the staged import vanished');
      return o.body;
    };
    // Pass 1: everything is checked before anything is written.
    let header: Line<'header'> | null = null;
    report.lines = await readStream(await object(), ctx, (_n, parsed) => {
      report.counts[parsed.type] = (report.counts[parsed.type] ?? 0) + 1;
      if (parsed.type === 'header') header = parsed.line;
    });
    const head = header as Line<'header'> | null;
    report.workspaceId = ctx.target;
    // Pass 2: apply.
    if (ctx.target !== null) {
      report.workspaceCreated = await ensureImportedWorkspace(c.env.DB, {
        id: ctx.target,
        name: query.name ?? head?.name ?? 'Imported workspace',
        description: head?.description ?? null,
        createdBy: actorId,
        createdAt: head?.createdAt ?? Date.now(),
      });
    }
    const applier = new Applier(c, report, ctx.target, actorId, head?.exportedBy);
    const applyCtx: Context0 = { target: null, queryWorkspaceId: query.workspaceId };
    await readStream(await object(), applyCtx, (n, parsed) => applier.add(n, parsed));
    await applier.finish();
    if (ctx.target !== null && (await ensureOwner(c.env.DB, ctx.target, actorId)))
      report.notes.push('No imported member is an owner here: the importing admin was made the owner');
    return report;
  } finally {
    await bucket.delete(stagingKey).catch(() => undefined);
  }
}
