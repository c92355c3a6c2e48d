#!/usr/bin/env node
/**
 * npm run import -- moves an OR3 deployment into this one (docs/migrating-from-or3.md):
 * accounts, workspaces, members, pending invites, every synced row and tombstone with its
 * revision, and every blob, through the target's public API. Rerunnable: what is already there
 * is skipped. Exit 0 when everything moved, 2 when items were skipped (see the report), 1 on an
 * error.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { digest, fsStore, parseOr3Hash, s3Store, sniffMime, type BlobStore } from './blobs.ts';
import { Or3Source, type Problem } from './source.ts';
import { ApiFailure, Target } from './target.ts';

const HELP = `Move an OR3 deployment (sync + basic-auth SQLite files, blob store) into this deployment.

Usage:
  npm run import -- --or3-db <file> --or3-auth-db <file> --blobs <dir> --to <url> \\
                    --admin-email <email> --admin-password <password> [--dry-run]

Required:
  --or3-db <file>            the sync provider's SQLite database (or3-provider-sqlite, OR3_SQLITE_DB_PATH)
  --or3-auth-db <file>       the basic-auth provider's SQLite database (or3-provider-basic-auth)
  --blobs <dir>              the fs storage provider's root (OR3_STORAGE_FS_ROOT), either layout;
                             or, for S3: --blobs-s3-endpoint, --blobs-s3-bucket (below)
  --to <url>                 this deployment, e.g. http://127.0.0.1:8787 (wrangler dev) or https://edge.example.com
  --admin-email <email>      a deployment admin of the target
  --admin-password <pw>      their password (or set OR3_IMPORT_ADMIN_PASSWORD)

Options:
  --dry-run                  check everything and report what would move and every problem; write nothing
  --oidc-issuer <p>=<url>    issuer of OR3 auth provider <p> (e.g. clerk=https://x.clerk.accounts.dev), so its
                             users keep their federated sign-in; repeatable (OR3 does not store issuers)
  --link-admin-identities    link the federated identities of the OR3 account that has your (the admin's) email
                             to your account here; without it they are reported, not linked (an import never
                             links identities to an existing account unless you confirm it)
  --workspace <id>           move only this workspace (repeatable); accounts always move
  --chunk-bytes <n>          largest import request (default 33554432; keep under the plan's request limit)
  --concurrency <n>          parallel blob uploads (default 4)
  --blobs-s3-endpoint <url>  S3 endpoint (path-style), with --blobs-s3-bucket <name>, --blobs-s3-prefix <p>,
                             --blobs-s3-region <r> (default auto), keys from OR3_IMPORT_S3_ACCESS_KEY_ID and
                             OR3_IMPORT_S3_SECRET_ACCESS_KEY (or --blobs-s3-access-key-id / --blobs-s3-secret-access-key)
  --json                     print the final report as JSON
  -h, --help                 this text

Exit status: 0 everything moved; 2 some items were skipped (listed in the report); 1 error.`;

interface Report {
  dryRun: boolean;
  users: { created: number; unchanged: number };
  workspaces: { created: number; unchanged: number };
  members: number;
  invites: number;
  changes: number;
  rows: number;
  tombstones: number;
  unchanged: number;
  blobs: { uploaded: number; present: number };
  bytes: number;
  notes: string[];
  skipped: { what: string; key: string; reason: string }[];
}

class Progress {
  #tty = process.stderr.isTTY;
  #last = '';
  line(text: string) {
    if (this.#tty) process.stderr.write(`\r\x1b[2K${text}`);
    else if (text !== this.#last) process.stderr.write(`${text}\n`);
    this.#last = text;
  }
  done() {
    if (this.#tty && this.#last) process.stderr.write('\n');
    this.#last = '';
  }
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
const eta = (started: number, done: number, total: number) => {
  if (done === 0 || done >= total) return '';
  const s = Math.round((((Date.now() - started) / done) * (total - done)) / 1000);
  return `, ETA ${s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`}`;
};

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'or3-db': { type: 'string' },
      'or3-auth-db': { type: 'string' },
      blobs: { type: 'string' },
      to: { type: 'string' },
      'admin-email': { type: 'string' },
      'admin-password': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'oidc-issuer': { type: 'string', multiple: true, default: [] },
      'link-admin-identities': { type: 'boolean', default: false },
      workspace: { type: 'string', multiple: true, default: [] },
      'chunk-bytes': { type: 'string', default: String(32 * 1024 * 1024) },
      concurrency: { type: 'string', default: '4' },
      'blobs-s3-endpoint': { type: 'string' },
      'blobs-s3-bucket': { type: 'string' },
      'blobs-s3-prefix': { type: 'string', default: '' },
      'blobs-s3-region': { type: 'string', default: 'auto' },
      'blobs-s3-access-key-id': { type: 'string' },
      'blobs-s3-secret-access-key': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  return values;
}

type Options = ReturnType<typeof parse>;

function blobStore(o: Options): BlobStore {
  if (o['blobs-s3-endpoint'] || o['blobs-s3-bucket']) {
    const accessKeyId = o['blobs-s3-access-key-id'] ?? process.env.OR3_IMPORT_S3_ACCESS_KEY_ID;
    const secretAccessKey = o['blobs-s3-secret-access-key'] ?? process.env.OR3_IMPORT_S3_SECRET_ACCESS_KEY;
    if (!o['blobs-s3-endpoint'] || !o['blobs-s3-bucket'] || !accessKeyId || !secretAccessKey)
      throw new UsageError('S3 blobs need --blobs-s3-endpoint, --blobs-s3-bucket and credentials');
    return s3Store({
      endpoint: o['blobs-s3-endpoint'],
      bucket: o['blobs-s3-bucket'],
      prefix: o['blobs-s3-prefix'] ?? '',
      region: o['blobs-s3-region'] ?? 'auto',
      accessKeyId,
      secretAccessKey,
    });
  }
  if (!o.blobs) throw new UsageError('--blobs <dir> (or the --blobs-s3-* options) is required');
  return fsStore(o.blobs);
}

class UsageError extends Error {}

/** Writes lines into JSONL files of at most `maxBytes`, each a complete stream (the header repeated, an end line). */
async function writeChunks(dir: string, name: string, lines: Iterable<Record<string, unknown>>, maxBytes: number): Promise<string[]> {
  const files: string[] = [];
  let header = '';
  let out: ReturnType<typeof createWriteStream> | null = null;
  let size = 0;
  const close = async () => {
    if (!out) return;
    const stream = out;
    stream.write('{"type":"end"}\n');
    await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    out = null;
  };
  for (const line of lines) {
    const text = JSON.stringify(line) + '\n';
    if (line.type === 'header') {
      header = text;
      continue;
    }
    if (!out || (size + text.length > maxBytes && size > header.length)) {
      await close();
      const path = join(dir, `${name}-${files.length + 1}.jsonl`);
      files.push(path);
      out = createWriteStream(path);
      out.write(header);
      size = header.length;
    }
    out.write(text);
    size += Buffer.byteLength(text);
  }
  if (!out && header) {
    const path = join(dir, `${name}-1.jsonl`);
    files.push(path);
    out = createWriteStream(path);
    out.write(header);
  }
  await close();
  return files;
}

export async function main(argv: string[]): Promise<number> {
  let o: Options;
  try {
    o = parse(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}\n`);
    return 1;
  }
  if (o.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const password = o['admin-password'] ?? process.env.OR3_IMPORT_ADMIN_PASSWORD;
  const missing = (['or3-db', 'or3-auth-db', 'to', 'admin-email'] as const).filter((k) => !o[k]);
  if (missing.length || !password) {
    process.stderr.write(
      `Missing: ${[...missing.map((m) => `--${m}`), ...(password ? [] : ['--admin-password (or OR3_IMPORT_ADMIN_PASSWORD)'])].join(', ')}\n\n${HELP}\n`,
    );
    return 1;
  }
  const issuers = new Map<string, string>();
  for (const pair of o['oidc-issuer'] ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) {
      process.stderr.write(`--oidc-issuer takes <provider>=<issuer URL>, not "${pair}"\n`);
      return 1;
    }
    issuers.set(pair.slice(0, at), pair.slice(at + 1));
  }
  const dryRun = !!o['dry-run'];
  const report: Report = {
    dryRun,
    users: { created: 0, unchanged: 0 },
    workspaces: { created: 0, unchanged: 0 },
    members: 0,
    invites: 0,
    changes: 0,
    rows: 0,
    tombstones: 0,
    unchanged: 0,
    blobs: { uploaded: 0, present: 0 },
    bytes: 0,
    notes: [],
    skipped: [],
  };
  const progress = new Progress();
  let store: BlobStore;
  let source: Or3Source;
  try {
    store = blobStore(o);
    source = new Or3Source(o['or3-db']!, o['or3-auth-db']!);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  const dir = await mkdtemp(join(tmpdir(), 'or3-import-'));
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    progress.line('Interrupted: finishing the current step (run the same command again to resume)');
  };
  process.once('SIGINT', onSignal);
  try {
    const target = new Target(o.to!);
    await target.signIn(o['admin-email']!, password);
    const started = Date.now();

    const skipServer = (what: string, r: any) => {
      for (const s of r.skipped ?? []) report.skipped.push({ what: s.type, key: s.key, reason: `${s.reason}${what ? ` (${what})` : ''}` });
      if ((r.skippedCount ?? 0) > (r.skipped?.length ?? 0))
        report.notes.push(`${r.skippedCount - r.skipped.length} more skipped items in ${what} (the server lists the first ${r.skipped.length})`);
      for (const n of r.notes ?? []) report.notes.push(`${what}: ${n}`);
    };

    // 1. Accounts.
    const users = source.users(issuers, { email: target.email, id: target.userId });
    progress.line(`accounts: ${users.length}`);
    for (const file of await writeChunks(
      dir,
      'users',
      [{ type: 'header', format: 'or3-edge-export/v1', workspaceId: null }, ...users.map((u) => u.line)],
      Number(o['chunk-bytes']),
    )) {
      // The operator's confirmation is the only way identities reach an existing account (the admin's).
      const r = await target.importFile(file, dryRun, o['link-admin-identities'] ? { linkExisting: target.userId } : {});
      if (!dryRun) {
        report.users.created += r.users.created;
        report.users.unchanged += r.users.unchanged;
      }
      skipServer('accounts', r);
    }
    if (dryRun) report.notes.push(`would move ${users.length} accounts`);

    // 2. Workspaces: members, invites, history and state, in chunks.
    const workspaces = source.workspaces(o.workspace?.length ? new Set(o.workspace) : null);
    const blobPlan: { ws: string; deleted: boolean }[] = [];
    for (const [i, ws] of workspaces.entries()) {
      if (interrupted) break;
      const files = await writeChunks(dir, `ws-${ws.id}`, source.workspaceLines(ws, Date.now()), Number(o['chunk-bytes']));
      for (const [n, file] of files.entries()) {
        progress.line(`workspace ${i + 1}/${workspaces.length} ${ws.name}: part ${n + 1}/${files.length}${eta(started, i, workspaces.length)}`);
        const r = await target.importFile(file, dryRun);
        skipServer(`workspace ${ws.id}`, r);
        if (dryRun) {
          report.changes += r.counts.change ?? 0;
          report.rows += r.counts.row ?? 0;
          report.tombstones += r.counts.tombstone ?? 0;
          report.members += r.counts.member ?? 0;
          report.invites += r.counts.invite ?? 0;
          continue;
        }
        if (n === 0) report.workspaces[r.workspaceCreated ? 'created' : 'unchanged']++;
        report.members += r.members.added + r.members.updated;
        report.invites += r.invites.added;
        report.changes += r.changes.applied;
        report.rows += r.rows.applied;
        report.tombstones += r.tombstones.applied;
        report.unchanged += r.members.unchanged + r.invites.unchanged + r.changes.unchanged + r.rows.unchanged + r.tombstones.unchanged;
      }
      progress.line(`workspace ${i + 1}/${workspaces.length} ${ws.name}: done`);
      blobPlan.push({ ws: ws.id, deleted: ws.deleted });
    }
    progress.done();
    if (dryRun) report.notes.push(`would move ${workspaces.length} workspaces`);

    // 3. Blobs, through the signed-URL upload path, checked against their hash first.
    const jobs: { ws: string; hash: string; meta: any }[] = [];
    for (const { ws } of blobPlan) for (const b of source.blobs(ws)) jobs.push({ ws, hash: b.hash, meta: b.meta });
    const totalBytes = jobs.reduce((n, j) => n + (Number(j.meta?.size_bytes) || 0), 0);
    let done = 0;
    let doneBytes = 0;
    const blobStarted = Date.now();
    const work = async (job: (typeof jobs)[number]) => {
      const skip = (reason: string) => report.skipped.push({ what: 'blob', key: `${job.ws} ${job.hash}`, reason });
      const parsed = parseOr3Hash(job.hash);
      if (!parsed) return skip('not a hash (sha256:<hex>, md5:<hex> or bare hex)');
      const found = await store.find(job.ws, parsed);
      if ('missing' in found) return skip(`missing: not at ${found.missing.join(' or ')}`);
      const sums = await digest(found.open());
      const actual = parsed.algorithm === 'sha256' ? sums.sha256 : sums.md5;
      if (actual !== parsed.hex) return skip(`hash mismatch: ${found.where} hashes to ${parsed.algorithm}:${actual}`);
      if (parsed.algorithm === 'md5') return skip('a legacy md5 blob: this deployment takes new uploads as sha256 only (not moved)');
      if (!/^sha256:/i.test(job.hash.trim()))
        return skip(`referenced as bare hex "${job.hash}": this deployment names sha256 files sha256:<hex> only, so the rows would not find it (not moved)`);
      const mimeType = typeof job.meta?.mime_type === 'string' ? job.meta.mime_type : await sniffMime(found.open());
      const meta = {
        name: typeof job.meta?.name === 'string' ? job.meta.name.slice(0, 1024) : parsed.hex,
        kind: typeof job.meta?.kind === 'string' ? job.meta.kind : mimeType === 'application/pdf' ? 'pdf' : 'image',
        ...(Number.isInteger(job.meta?.width) ? { width: job.meta.width } : {}),
        ...(Number.isInteger(job.meta?.height) ? { height: job.meta.height } : {}),
        ...(Number.isInteger(job.meta?.page_count) ? { page_count: job.meta.page_count } : {}),
      };
      if (dryRun) {
        report.blobs.uploaded++;
        report.bytes += sums.size;
        return;
      }
      try {
        const outcome = await target.upload(job.ws, `sha256:${parsed.hex}`, sums.size, mimeType, meta, found.open);
        report.blobs[outcome]++;
        if (outcome === 'uploaded') report.bytes += sums.size;
      } catch (err) {
        if (err instanceof ApiFailure && err.status < 500 && err.status !== 401) return skip(err.message);
        throw err;
      } finally {
        doneBytes += sums.size;
      }
    };
    let next = 0;
    const worker = async () => {
      while (next < jobs.length && !interrupted) {
        const job = jobs[next++]!;
        await work(job);
        done++;
        progress.line(`blobs ${done}/${jobs.length}, ${mib(doneBytes)} of ${mib(Math.max(totalBytes, doneBytes))}${eta(blobStarted, doneBytes, totalBytes)}`);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Number(o.concurrency) || 4) }, worker));
    progress.done();
    if (dryRun) report.notes.push(`would upload ${report.blobs.uploaded} blobs (${mib(report.bytes)})`);

    // 4. Workspaces OR3 had deleted stay deleted (soft) here, after their blobs moved.
    if (!dryRun && !interrupted) for (const { ws, deleted } of blobPlan) if (deleted) await target.request('DELETE', `/api/admin/workspaces/${ws}`);

    for (const p of source.problems)
      (p.kind === 'note' ? report.notes : report.skipped).push(...(p.kind === 'note' ? [p.reason] : ([{ what: p.kind, key: p.key, reason: p.reason }] as any)));
    if (source.rewrittenOpIds) report.notes.push(`${source.rewrittenOpIds} non-UUID opIds (OR3 legacy placeholders) were given stable derived UUIDs`);
    if (interrupted) report.notes.push('interrupted: run the same command again to finish');
    print(report, !!o.json);
    return interrupted ? 130 : report.skipped.length ? 2 : 0;
  } catch (err) {
    progress.done();
    process.stderr.write(`error: ${(err as Error).message}\n`);
    // A failure's report shows only what did move before it (rerun to finish), never a page of zeros.
    if (movedAnything(report)) {
      report.notes.push('stopped by the error above: run the same command again to finish');
      print(report, !!o.json, 'Moved before the error:');
    } else process.stderr.write('Nothing was moved.\n');
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    source.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const movedAnything = (r: Report) =>
  r.users.created +
    r.users.unchanged +
    r.workspaces.created +
    r.workspaces.unchanged +
    r.members +
    r.invites +
    r.changes +
    r.rows +
    r.tombstones +
    r.blobs.uploaded +
    r.blobs.present >
  0;

function print(report: Report, json: boolean, title?: string) {
  if (json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const w = (s: string) => process.stdout.write(`${s}\n`);
  w(title ?? (report.dryRun ? 'Dry run (nothing was written):' : 'Moved:'));
  w(`  users       ${report.users.created} created, ${report.users.unchanged} already there`);
  w(`  workspaces  ${report.workspaces.created} created, ${report.workspaces.unchanged} already there`);
  w(`  members     ${report.members}   invites ${report.invites}`);
  w(`  changes     ${report.changes}   rows ${report.rows}   tombstones ${report.tombstones}   (unchanged: ${report.unchanged})`);
  w(`  blobs       ${report.blobs.uploaded} uploaded, ${report.blobs.present} already there, ${mib(report.bytes)}`);
  for (const n of report.notes) w(`  note: ${n}`);
  if (report.skipped.length) {
    w(`Skipped (${report.skipped.length}):`);
    for (const s of report.skipped) w(`  ${s.what} ${s.key}: ${s.reason}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('or3-import/cli.ts')) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
