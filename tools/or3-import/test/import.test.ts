/**
 * `npm run import` end to end: a fixture OR3 deployment (fixture.ts) moved into the real Worker
 * (started by wrangler's test harness, as the client tests do), checked row for row against
 * OR3's materialized state; then a dry run, a run killed midway, reruns and sign-ins.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../../client/test/harness';
import { uuidFor } from '../source.ts';
import { buildFixture, expectedSnapshot, type Fixture } from './fixture.ts';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const ADMIN_PASSWORD = 'the importing admin pw';

let server: TestServer;
let fx: Fixture;
let adminEmail: string;
const timings: Record<string, number> = {};

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  report: any;
  ms: number;
}

/** Runs the CLI as a user would; `killWhen` SIGKILLs it once its progress output matches. */
function runCli(extra: string[] = [], killWhen?: RegExp): Promise<Run> {
  const args = [
    '--disable-warning=ExperimentalWarning',
    CLI,
    '--or3-db',
    fx.syncDb,
    '--or3-auth-db',
    fx.authDb,
    '--blobs',
    fx.blobs,
    '--to',
    server.url,
    '--admin-email',
    adminEmail,
    '--oidc-issuer',
    `clerk=${fx.clerkIssuer}`,
    '--json',
    ...extra,
  ];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, OR3_IMPORT_ADMIN_PASSWORD: ADMIN_PASSWORD }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (killWhen?.test(stderr)) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      let report: any = null;
      try {
        report = JSON.parse(stdout);
      } catch {
        // killed before it printed
      }
      resolve({ code, stdout, stderr, report, ms: Date.now() - started });
    });
  });
}

async function api(method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(new URL(path, server.url), {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      'cf-connecting-ip': `198.51.100.${Math.floor(Math.random() * 250) + 1}`,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res;
}

async function signIn(email: string, password: string): Promise<string | null> {
  const res = await fetch(new URL('/api/basic-auth/sign-in', server.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': `203.0.113.${Math.floor(Math.random() * 250) + 1}` },
    body: JSON.stringify({ email, password }),
  });
  return res.status === 200 ? ((await res.json()) as { accessToken: string }).accessToken : null;
}

async function snapshot(token: string, workspaceId: string) {
  const items: any[] = [];
  let pageToken: string | undefined;
  let highWatermark = 0;
  for (;;) {
    const res = await api('POST', '/api/sync/snapshot', token, { scope: { workspaceId }, pageSize: 1000, ...(pageToken ? { pageToken } : {}) });
    expect(res.status).toBe(200);
    const page = (await res.json()) as any;
    highWatermark = page.highWatermark;
    items.push(...page.items);
    if (!page.nextPageToken) return { items, highWatermark };
    pageToken = page.nextPageToken;
  }
}

/** Everything a rerun must leave as it was: snapshots, members, invites, blobs and users. */
async function state(tokens: { alice: string; bob: string }) {
  const d1 = async (sql: string, ...binds: unknown[]) =>
    (
      await server.env.DB.prepare(sql)
        .bind(...binds)
        .all()
    ).results;
  return {
    team: await snapshot(tokens.alice, fx.team),
    teamBob: await snapshot(tokens.bob, fx.team),
    solo: await snapshot(tokens.alice, fx.solo),
    members: await d1(
      'SELECT workspace_id, user_id, role, created_at, updated_at FROM members WHERE workspace_id IN (?, ?, ?) ORDER BY 1, 2',
      fx.team,
      fx.solo,
      fx.gone,
    ),
    invites: await d1('SELECT id, role, token_hash, created_by, expires_at FROM invites WHERE workspace_id = ? ORDER BY id', fx.team),
    workspaces: await d1('SELECT id, name, description, created_at, deleted_at FROM workspaces WHERE id IN (?, ?, ?) ORDER BY id', fx.team, fx.solo, fx.gone),
    users: await d1('SELECT id, email, display_name, created_at FROM users WHERE email LIKE ? OR id = ? ORDER BY id', `%-${fx.tag}@example.com`, fx.carol.id),
    identities: await d1('SELECT user_id, provider, issuer, subject FROM identities WHERE subject = ?', fx.carol.clerkId),
    usage: await (await api('GET', `/api/storage/usage?workspace_id=${fx.team}`, tokens.alice)).json(),
  };
}

beforeAll(async () => {
  fx = buildFixture();
  server = await startServer();
  adminEmail = `importer-${fx.tag}@example.com`;
  const registered = await api('POST', '/api/basic-auth/register', undefined, { email: adminEmail, password: ADMIN_PASSWORD, confirmPassword: ADMIN_PASSWORD });
  expect(registered.status).toBe(200);
  await server.env.DB.prepare('UPDATE users SET is_admin = 1 WHERE email = ?').bind(adminEmail).run();
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
  console.log(`or3-import timings (ms): ${JSON.stringify(timings)}`);
});

describe('npm run import', () => {
  it('--help explains the flags', async () => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', CLI, '--help']);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((r) => child.on('close', r));
    expect(code).toBe(0);
    for (const flag of ['--or3-db', '--or3-auth-db', '--blobs', '--to', '--admin-email', '--admin-password', '--dry-run', 'OR3_IMPORT_ADMIN_PASSWORD'])
      expect(out).toContain(flag);
  });

  it('a dry run reports what would move and every problem, and writes nothing', async () => {
    const run = await runCli(['--dry-run']);
    timings.dryRun = run.ms;
    expect(run.code, run.stderr).toBe(2);
    expect(run.report).toMatchObject({ dryRun: true, users: { created: 0 }, blobs: { uploaded: 3 } });
    expect(run.report.notes).toEqual(expect.arrayContaining(['would move 4 accounts', 'would move 3 workspaces']));
    const reasons = run.report.skipped.map((s: any) => `${s.what} ${s.reason}`);
    expect(reasons).toEqual(
      expect.arrayContaining([expect.stringMatching(/^blob missing: not at .*sha256_/), expect.stringMatching(/^blob hash mismatch: .* hashes to sha256:/)]),
    );
    expect(run.report.skipped).toHaveLength(2);
    expect((await server.env.DB.prepare('SELECT count(*) AS n FROM workspaces WHERE id IN (?, ?, ?)').bind(fx.team, fx.solo, fx.gone).first()).n).toBe(0);
    expect(
      (await server.env.DB.prepare('SELECT count(*) AS n FROM users WHERE email LIKE ? AND email != ?').bind(`%-${fx.tag}@example.com`, adminEmail).first()).n,
    ).toBe(0);
  });

  it('moves everything: a run killed midway, rerun, ends with OR3 state row for row; files, passwords, invites and roles come along', async () => {
    const killed = await runCli([], /workspace 2\/3/);
    expect(killed.code).toBeNull(); // SIGKILL
    expect(killed.report).toBeNull();
    // Killed after the first workspace: it is there, the last one is not yet.
    const exists = async (id: string) => (await server.env.DB.prepare('SELECT count(*) AS n FROM workspaces WHERE id = ?').bind(id).first()).n;
    expect(await exists(fx.team)).toBe(1);
    expect(await exists(fx.gone)).toBe(0);

    const run = await runCli();
    timings.fullRun = run.ms;
    expect(run.code, run.stderr).toBe(2);
    // Nothing stays staged in R2: the rerun replaced (same part, same import id) what the killed run left.
    expect((await server.env.BLOBS.list({ prefix: 'imports/' })).objects).toEqual([]);
    const r = run.report;
    expect(r.skipped.map((s: any) => s.key).sort()).toEqual([`${fx.team} ${fx.blob.corrupt.hash}`, `${fx.team} ${fx.blob.missing.hash}`].sort());
    expect(r.blobs.uploaded + r.blobs.present).toBe(3);
    expect(r.notes).toEqual(expect.arrayContaining([expect.stringMatching(/^1 non-UUID opIds/)]));

    // The bcrypt user signs in with the old password; the hash is upgraded to ours.
    const aliceHash = () => server.env.DB.prepare('SELECT password_hash FROM users WHERE id = ?').bind(fx.alice.id).first();
    expect((await aliceHash()).password_hash).toMatch(/^\$2b\$12\$/);
    const signInStarted = Date.now();
    const alice = (await signIn(fx.alice.email, fx.alice.password!))!;
    timings.bcryptCost12SignIn = Date.now() - signInStarted;
    expect(alice).toBeTruthy();
    expect((await aliceHash()).password_hash).toMatch(/^\$scrypt\$v=1\$/);
    const bob = (await signIn(fx.bob.email, fx.bob.password!))!;
    expect(bob).toBeTruthy();
    expect(await signIn(fx.dave.email, fx.dave.password!)).toBeTruthy(); // registered, never synced: still an account
    expect(await signIn(fx.alice.email, 'not the old password')).toBeNull();

    // Snapshots equal OR3's materialized state, row for row: payloads and revisions.
    const opIdOf = (id: string) => uuidFor(fx.team, id);
    for (const [token, who, ws] of [
      [alice, fx.alice.id, fx.team],
      [bob, fx.bob.id, fx.team],
      [alice, fx.alice.id, fx.solo],
    ] as const) {
      const got = (await snapshot(token, ws)).items.map((i: any) => {
        if (i.tableName !== 'file_meta' || i.kind !== 'row') return i;
        const { ref_count: _r, ...payload } = i.payload;
        return { ...i, payload };
      });
      expect(got).toEqual(expectedSnapshot(fx.syncDb, ws, (id) => uuidFor(ws, id), who));
    }
    const team = await snapshot(alice, fx.team);
    expect(team.items.find((i: any) => i.pk === 'p1').revision).toEqual({ clock: 1, hlc: 'legacy:0', opId: opIdOf('legacy:projects:p1:1:legacy:0') });
    expect(Object.fromEntries(team.items.filter((i: any) => i.tableName === 'file_meta').map((i: any) => [i.pk, i.payload.ref_count]))).toEqual({
      [fx.blob.png.hash]: 1,
      [fx.blob.pdf.hash]: 1,
      [fx.blob.missing.hash]: 1,
      [fx.blob.corrupt.hash]: 1,
    });
    // Pull serves the same winners; the LWW loser of m1 stays in the history, not in pull.
    const pulled = (await (await api('POST', '/api/sync/pull', alice, { scope: { workspaceId: fx.team }, cursor: 0, limit: 1000 })).json()) as any;
    expect(pulled.changes.find((c: any) => c.pk === 'm1').payload.data).toBe('final text');
    const exported = (await (await api('GET', `/api/workspaces/${fx.team}/export`, alice)).text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(exported.filter((l) => l.type === 'change' && l.pk === 'm1').map((l) => l.payload.data)).toEqual([
      'first draft',
      'final text',
      'stale offline edit',
    ]);

    // Blobs download byte-identical; the missing and corrupted ones were not imported.
    for (const key of ['png', 'pdf'] as const) {
      const res = await api('POST', '/api/storage/presign-download', alice, { workspace_id: fx.team, hash: fx.blob[key].hash });
      expect(res.status).toBe(200);
      const bytes = new Uint8Array(await (await fetch(((await res.json()) as any).url)).arrayBuffer());
      expect(bytes).toEqual(fx.blob[key].bytes);
    }
    for (const key of ['missing', 'corrupt'] as const) {
      expect((await api('POST', '/api/storage/presign-download', alice, { workspace_id: fx.team, hash: fx.blob[key].hash })).status).toBe(404);
    }
    const soloFile = await api('POST', '/api/storage/presign-download', alice, { workspace_id: fx.solo, hash: fx.blob.solo.hash });
    expect(new Uint8Array(await (await fetch(((await soloFile.json()) as any).url)).arrayBuffer())).toEqual(fx.blob.solo.bytes);
    const usage = (await (await api('GET', `/api/storage/usage?workspace_id=${fx.team}`, alice)).json()) as any;
    expect(usage).toMatchObject({ blob_count: 2, used_bytes: fx.blob.png.bytes.byteLength + fx.blob.pdf.bytes.byteLength });

    // Members and roles; the OIDC user keeps its Clerk identity; the pending invite still works.
    const members = (await (await api('GET', `/api/workspaces/${fx.team}/members`, alice)).json()) as any;
    expect(members.members.map((m: any) => [m.userId, m.role])).toEqual([
      [fx.alice.id, 'owner'],
      [fx.bob.id, 'editor'],
      [fx.carol.id, 'viewer'],
    ]);
    expect(await server.env.DB.prepare('SELECT provider, issuer, subject FROM identities WHERE user_id = ?').bind(fx.carol.id).first()).toEqual({
      provider: 'clerk',
      issuer: fx.clerkIssuer,
      subject: fx.carol.clerkId,
    });
    expect((await server.env.DB.prepare('SELECT count(*) AS n FROM invites WHERE workspace_id = ?').bind(fx.team).first()).n).toBe(1);
    const gone = await server.env.DB.prepare('SELECT deleted_at FROM workspaces WHERE id = ?').bind(fx.gone).first();
    expect(gone.deleted_at).not.toBeNull();
    const list = (await (await api('GET', '/api/workspaces', alice)).json()) as any;
    expect(list.workspaces.map((w: any) => w.name).sort()).toEqual(['My Workspace', 'Team']);
  });

  it('a second run changes nothing', async () => {
    const tokens = { alice: (await signIn(fx.alice.email, fx.alice.password!))!, bob: (await signIn(fx.bob.email, fx.bob.password!))! };
    const before = await state(tokens);
    const run = await runCli();
    timings.secondRun = run.ms;
    expect(run.code, run.stderr).toBe(2); // the same two blobs are still missing / corrupted
    expect(run.report).toMatchObject({
      users: { created: 0, unchanged: 4 },
      workspaces: { created: 0, unchanged: 3 },
      members: 0,
      invites: 0,
      changes: 0,
      rows: 0,
      tombstones: 0,
      blobs: { uploaded: 0, present: 3 },
      bytes: 0,
    });
    expect(await state(tokens)).toEqual(before);
  });

  it('an invite link made by OR3 admits someone after the move', async () => {
    const erin = `erin-${fx.tag}@example.com`;
    const res = await api('POST', '/api/basic-auth/register', undefined, {
      email: erin,
      password: 'erin joins the team',
      confirmPassword: 'erin joins the team',
      inviteToken: fx.inviteToken,
    });
    expect(res.status).toBe(200);
    const token = (await signIn(erin, 'erin joins the team'))!;
    const list = (await (await api('GET', '/api/workspaces', token)).json()) as any;
    expect(list.workspaces.find((w: any) => w.id === fx.team)).toMatchObject({ role: 'editor' });
  });
});

describe('npm run import: the admin mapping (SECURITY.md §7 case 40)', () => {
  it("links the OR3 account's identities to the admin only when the operator confirms it, and reports it", async () => {
    // An OR3 account with the importing admin's email, also signed in through Clerk.
    const admin = (await server.env.DB.prepare('SELECT id FROM users WHERE email = ?').bind(adminEmail).first()).id as string;
    const or3Id = randomUUID();
    const accountId = randomUUID();
    const clerkId = `user_${fx.tag}admin`;
    const auth = new DatabaseSync(fx.authDb);
    auth
      .prepare('INSERT INTO basic_auth_accounts VALUES (?, ?, ?, ?, 0, ?, ?)')
      .run(accountId, adminEmail, bcrypt.hashSync('old admin pw', 4), 'Admin', Date.now(), Date.now());
    auth.close();
    const sync = new DatabaseSync(fx.syncDb);
    sync.prepare('INSERT INTO users (id, email, display_name, active_workspace_id, created_at) VALUES (?, ?, ?, NULL, ?)').run(or3Id, adminEmail, 'Admin', 1);
    sync.prepare('INSERT INTO auth_accounts VALUES (?, ?, ?, ?, ?)').run(randomUUID(), or3Id, 'basic-auth', accountId, 1);
    sync.prepare('INSERT INTO auth_accounts VALUES (?, ?, ?, ?, ?)').run(randomUUID(), or3Id, 'clerk', clerkId, 1);
    sync.close();
    const linkedTo = async () => (await server.env.DB.prepare('SELECT user_id FROM identities WHERE subject = ?').bind(clerkId).first())?.user_id ?? null;

    const unconfirmed = await runCli(['--workspace', 'none']);
    expect(unconfirmed.code, unconfirmed.stderr).toBe(2);
    expect(unconfirmed.report.skipped).toEqual(
      expect.arrayContaining([expect.objectContaining({ key: admin, reason: expect.stringContaining(`not linked: user ${admin} already exists here`) })]),
    );
    expect(await linkedTo()).toBeNull();

    const confirmed = await runCli(['--workspace', 'none', '--link-admin-identities']);
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(confirmed.report.notes).toEqual(expect.arrayContaining([expect.stringContaining(`identities linked to the existing user ${admin}`)]));
    expect(await linkedTo()).toBe(admin);
  });
});
