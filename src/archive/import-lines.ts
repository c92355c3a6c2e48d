/**
 * Reading an import stream (docs/admin.md "Import"): the line types and their fields, and the
 * validating read of a JSONL stream, line by line, never more than one line in memory. Any fault
 * is a 400 naming the line; well-formed lines that cannot be applied come back marked as skips.
 */
import * as z from 'zod';
import { ApiError } from '../errors';
import { describeIssues } from '../http/body';
import { bcryptCostProblem, isBcryptHash, parseHash as parsePasswordHash } from '../auth/passwords';
import { ROLES } from '../workspace-records/permissions';
import { parseHash } from '../../protocol/hashes';
import { mimeType } from '../storage/mime-type';
import { checkStoredOp } from '../../protocol/rules';
import { EXPORT_FORMAT } from './export';

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
export const id = z.string().regex(ID, 'must be 1-128 letters, digits, - or _');
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

export type LineType = keyof typeof LINES;
export type Line<T extends LineType> = z.output<(typeof LINES)[T]>;

export const invalidStream = (line: number, why: string) => new ApiError(400, 'invalid_import', `line ${line}: ${why}`);

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

/** Where an import stream goes, as its lines reveal it. */
export interface Destination {
  /** Where the stream goes: the query's workspace, else the header's; null for a stream of users only. */
  target: string | null;
  queryWorkspaceId: string | undefined;
}

/** One parsed line, or a skip (well formed, but it cannot be applied). */
export type Parsed = { [T in LineType]: { type: T; line: Line<T>; skip?: string; key: string } }[LineType];

function parseLine(n: number, raw: string, state: { header: Line<'header'> | null; ctx: Destination }): Parsed {
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
      if (h && isBcryptHash(h)) skip = bcryptCostProblem(h) ?? undefined;
      else if (h) {
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
export async function readStream(
  body: ReadableStream<Uint8Array>,
  ctx: Destination,
  each: (n: number, parsed: Parsed) => Promise<void> | void,
): Promise<number> {
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
