/**
 * The importer's inputs: an S3 blob source (a real S3-compatible server, s3rver, started here),
 * a federated user whose issuer is not given (imported with their email, without the identity,
 * reported; their membership has its user), and broken inputs (a missing file, a missing column)
 * stopping before anything is written, with the file, table and column named and no empty report.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { AwsClient } from 'aws4fetch';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../../client/test/harness';
import { READS } from '../source.ts';
import { buildFixture, type Fixture } from './fixture.ts';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const ADMIN_PASSWORD = 'the importing admin pw';
const S3_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }; // s3rver's built-in credentials
const BUCKET = 'or3-blobs';

let server: TestServer;
let s3: S3rver;
let s3Endpoint = '';
let fx: Fixture;
let adminEmail = '';
const scratch = mkdtempSync(join(tmpdir(), 'or3-import-sources-'));

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    OR3_IMPORT_ADMIN_PASSWORD: ADMIN_PASSWORD,
    OR3_IMPORT_S3_ACCESS_KEY_ID: S3_KEY.accessKeyId,
    OR3_IMPORT_S3_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', CLI, '--to', server.url, '--admin-email', adminEmail, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every file under `dir`, relative. */
const walk = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)).map((f) => join(name, f)) : [name]));

beforeAll(async () => {
  fx = buildFixture();
  server = await startServer();
  adminEmail = `importer-${fx.tag}@example.com`;
  const registered = await fetch(new URL('/api/basic-auth/register', server.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': '198.51.100.77' },
    body: JSON.stringify({ email: adminEmail, password: ADMIN_PASSWORD, confirmPassword: ADMIN_PASSWORD }),
  });
  expect(registered.status).toBe(200);
  await server.env.DB.prepare('UPDATE users SET is_admin = 1 WHERE email = ?').bind(adminEmail).run();

  // The fixture's blob directory, both layouts, uploaded into a bucket under a prefix.
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(scratch, 's3'), configureBuckets: [{ name: BUCKET }] });
  const { port } = await s3.run();
  s3Endpoint = `http://127.0.0.1:${port}`;
  const client = new AwsClient({ ...S3_KEY, service: 's3', region: 'us-east-1' });
  for (const file of walk(fx.blobs)) {
    const res = await client.fetch(`${s3Endpoint}/${BUCKET}/or3/${relative(fx.blobs, join(fx.blobs, file))}`, {
      method: 'PUT',
      body: readFileSync(join(fx.blobs, file)),
    });
    expect(res.status, `PUT ${file}`).toBe(200);
  }
}, 120_000);

afterAll(async () => {
  await s3?.close();
  await server?.close();
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

describe('or3-import inputs', () => {
  it('a missing file or column stops it before writing, naming the file, the table and the column, with no empty report', async () => {
    const missing = await runCli(['--or3-db', join(scratch, 'nope.sqlite'), '--or3-auth-db', fx.authDb, '--blobs', fx.blobs]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(scratch, 'nope.sqlite')}: no such file (--or3-db)`);
    expect(missing.stdout).toBe('');

    const older = join(scratch, 'older.sqlite');
    copyFileSync(fx.syncDb, older);
    const db = new DatabaseSync(older);
    db.exec('ALTER TABLE users DROP COLUMN display_name; ALTER TABLE s_messages DROP COLUMN hlc');
    db.close();
    const run = await runCli(['--or3-db', older, '--or3-auth-db', fx.authDb, '--blobs', fx.blobs]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${older}: table users has no column display_name`);
    expect(run.stderr).toContain(`${older}: table s_messages has no column hlc`);
    expect(run.stdout).toBe('');
    expect(run.stdout + run.stderr).not.toMatch(/0 created/);
    expect((await server.env.DB.prepare('SELECT count(*) AS n FROM workspaces WHERE id = ?').bind(fx.team).first()).n).toBe(0);
  });

  it('a failure after the start (a wrong admin password) prints the error, not a page of zeros', async () => {
    const env = { ...process.env, OR3_IMPORT_ADMIN_PASSWORD: 'not the password' };
    const child = spawn(
      process.execPath,
      [
        '--disable-warning=ExperimentalWarning',
        CLI,
        '--to',
        server.url,
        '--admin-email',
        adminEmail,
        '--or3-db',
        fx.syncDb,
        '--or3-auth-db',
        fx.authDb,
        '--blobs',
        fx.blobs,
      ],
      { env },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    expect(await new Promise((r) => child.on('close', r))).toBe(1);
    expect(err).toMatch(/^error: .*\nNothing was moved\.\n$/s);
    expect(out).toBe('');
  });

  it('reads blobs from S3; a federated user without a known issuer keeps their email and membership, without the identity', async () => {
    const run = await runCli([
      '--or3-db',
      fx.syncDb,
      '--or3-auth-db',
      fx.authDb,
      '--blobs-s3-endpoint',
      s3Endpoint,
      '--blobs-s3-bucket',
      BUCKET,
      '--blobs-s3-prefix',
      'or3',
      '--blobs-s3-region',
      'us-east-1',
      '--json',
    ]);
    expect(run.code, run.stderr).toBe(2);
    const report = JSON.parse(run.stdout);
    // The same outcome as from the directory: three blobs up, the missing and the corrupted one reported.
    expect(report.blobs).toEqual({ uploaded: 3, present: 0 });
    const skipped = report.skipped.map((s: { what: string; key: string; reason: string }) => `${s.what} ${s.reason}`);
    expect(skipped).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^blob missing: not at ${s3Endpoint}/${BUCKET}/or3/workspaces/`)),
        expect.stringMatching(/^blob hash mismatch: http.* hashes to sha256:/),
        expect.stringMatching(/^identity no issuer known for provider "clerk": the user is imported without this identity \(with their email carol-/),
      ]),
    );
    const res = await fetch(new URL('/api/basic-auth/sign-in', server.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': '203.0.113.9' },
      body: JSON.stringify({ email: fx.alice.email, password: fx.alice.password }),
    });
    const { accessToken } = (await res.json()) as { accessToken: string };
    const download = await fetch(new URL('/api/storage/presign-download', server.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workspace_id: fx.team, hash: fx.blob.png.hash }),
    });
    expect(new Uint8Array(await (await fetch(((await download.json()) as { url: string }).url)).arrayBuffer())).toEqual(fx.blob.png.bytes);

    // Carol (Clerk): her email came along, her identity did not, and her membership has its user.
    expect(await server.env.DB.prepare('SELECT email FROM users WHERE id = ?').bind(fx.carol.id).first()).toEqual({ email: fx.carol.email });
    expect((await server.env.DB.prepare('SELECT count(*) AS n FROM identities WHERE user_id = ?').bind(fx.carol.id).first()).n).toBe(0);
    const orphans = await server.env.DB.prepare(
      'SELECT count(*) AS n FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE m.workspace_id = ? AND u.id IS NULL',
    )
      .bind(fx.team)
      .first();
    expect(orphans.n).toBe(0);
    expect(await server.env.DB.prepare('SELECT role FROM members WHERE workspace_id = ? AND user_id = ?').bind(fx.team, fx.carol.id).first()).toEqual({
      role: 'viewer',
    });
  });
});

describe('the guide', () => {
  it('lists every table and column the importer reads (docs/migrating-from-or3.md "What it reads")', () => {
    const guide = readFileSync(fileURLToPath(new URL('../../../docs/migrating-from-or3.md', import.meta.url)), 'utf8');
    const section = guide.slice(guide.indexOf('## What it reads'), guide.indexOf('## Where OR3 keeps its files'));
    const listed = new Map<string, string[]>();
    for (const line of section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| file') && !l.startsWith('|---'))) {
      const [, , tables, columns] = line.split('|').map((c) => c.trim());
      const names = [...columns!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
      for (const t of [...tables!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!)) listed.set(t, names);
    }
    const reads = { ...READS.sync, ...READS.syncOptional, ...READS.auth } as Record<string, readonly string[]>;
    expect(Object.fromEntries([...listed].map(([t, c]) => [t, [...c].sort()]))).toEqual(
      Object.fromEntries(Object.entries(reads).map(([t, c]) => [t, [...c].sort()])),
    );
  });
});
