/**
 * `npm run deploy` (scripts/deploy.mjs) against a stand-in for the `wrangler` executable
 * (scripts/fake-wrangler.mjs) that keeps a fake Cloudflare account and records every call: the
 * Cloudflare API itself cannot be reached from a test. What this proves: the exact wrangler calls
 * of a first deploy and of a re-run, that a re-run changes nothing, that generated secrets are
 * strong, handed over in a private file and never printed, and that the setup link matches the
 * token hash the Worker checks (test/setup/first-admin.test.ts redeems such a hash for real).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'or3-deploy-test-'));
const paths = { state: join(dir, 'state.json'), log: join(dir, 'calls.jsonl'), link: join(dir, 'setup-link.json') };
let server: Server;
let url = '';

type Call = { argv: string[]; secretsFile?: { mode: string; values: Record<string, string> } };
type State = {
  loggedIn: boolean;
  workerExists: boolean;
  databases: string[];
  buckets: string[];
  secrets: Record<string, string>;
  migrations: string[];
  admins: number;
  setupTokens: string[];
  uploads: number;
  url: string;
};

const readState = (): State => JSON.parse(readFileSync(paths.state, 'utf8'));
const writeState = (patch: Partial<State>) => writeFileSync(paths.state, JSON.stringify({ ...readState(), ...patch }));

/** Runs the deploy script; returns its output and the wrangler calls it made. */
function deploy(...args: string[]): Promise<{ code: number; out: string; calls: Call[] }> {
  writeFileSync(paths.log, '');
  const env = {
    ...process.env,
    OR3_WRANGLER: join(root, 'scripts/fake-wrangler.mjs'),
    FAKE_WRANGLER_STATE: paths.state,
    FAKE_WRANGLER_LOG: paths.log,
    OR3_SETUP_LINK_FILE: paths.link,
    OR3_DEPLOY_HEALTH_WAIT_MS: '0',
  };
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'scripts/deploy.mjs'), ...args], { cwd: root, env }, (err, stdout, stderr) => {
      const calls = readFileSync(paths.log, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Call);
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr, calls });
    });
  });
}

const ADMINS = ['d1', 'execute', 'DB', '--remote', '--json', '--command', 'SELECT COUNT(*) AS admins FROM users WHERE is_admin = 1'];
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

beforeAll(async () => {
  // The deployed Worker's deep health check, as the stand-in's "workers.dev" URL.
  server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url !== '/api/health?deep=true') return void res.writeHead(404).end('{}');
    res.end(JSON.stringify({ status: 'ok', providers: { sync: { available: true }, storage: { available: true }, auth: { available: true } } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  writeFileSync(
    paths.state,
    JSON.stringify({
      loggedIn: true,
      workerExists: false,
      databases: [],
      buckets: [],
      secrets: {},
      migrations: [],
      admins: 0,
      setupTokens: [],
      uploads: 0,
      url,
    }),
  );
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('npm run deploy', () => {
  it('--dry-run builds the bundle only and touches no account', async () => {
    const { code, out, calls } = await deploy('--dry-run');
    expect(code).toBe(0);
    expect(calls.map((c) => c.argv)).toEqual([['deploy', '--dry-run', '--outdir', 'dist']]);
    expect(out).toContain('A real run would');
    expect(readState().uploads).toBe(0);
  });

  let firstLink = '';
  it('a first deploy on a fresh account: resources, migrations after the upload, generated secrets, a setup link, health', async () => {
    const { code, out, calls } = await deploy();
    expect(code, out).toBe(0);
    const link = /(http:\/\/127\.0\.0\.1:\d+\/setup#token=([A-Za-z0-9_-]{43}))/.exec(out);
    expect(link, out).not.toBeNull();
    firstLink = link![1]!;
    const state = readState();
    expect(calls.map((c) => c.argv)).toEqual([
      ['whoami', '--json'],
      ['d1', 'list', '--json'],
      ['secret', 'list', '--format', 'json'],
      ['deploy', '--secrets-file', '<file>'],
      ['d1', 'migrations', 'apply', 'DB', '--remote'],
      ADMINS,
      [
        'd1',
        'execute',
        'DB',
        '--remote',
        '--command',
        expect.stringMatching(/^DELETE FROM setup_tokens; INSERT INTO setup_tokens \(token_hash, created_at\) VALUES \('[0-9a-f]{64}', \d+\);$/),
      ],
    ]);
    // The secrets: both required ones, strong, distinct, in a private file that is gone afterwards, never printed.
    const handed = calls[3]!.secretsFile!;
    expect(handed.mode).toBe('600');
    expect(Object.keys(handed.values).sort()).toEqual(['OR3_BASIC_AUTH_JWT_SECRET', 'OR3_STORAGE_URL_SECRET']);
    const values = Object.values(handed.values);
    for (const value of values) {
      expect(value).toMatch(/^[A-Za-z0-9_-]{64}$/); // 48 random bytes
      expect(out).not.toContain(value);
    }
    expect(new Set(values).size).toBe(2);
    // The account: everything made, the link's token stored as the hash the Worker checks.
    expect(state.databases).toEqual(['or3-edge']);
    expect(state.buckets).toEqual(['or3-edge-blobs']);
    expect(state.migrations).toContain('0002_setup_tokens.sql');
    expect(state.setupTokens).toEqual([sha256(link![2]!)]);
    expect(out).toContain(`Deployed: ${url}`);
    expect(out).toMatch(/Health .*: ok/);
  });

  it('a second run changes nothing: same secrets, same setup link, migrations before the upload', async () => {
    const before = readState();
    const { code, out, calls } = await deploy();
    expect(code, out).toBe(0);
    expect(calls.map((c) => c.argv)).toEqual([
      ['whoami', '--json'],
      ['d1', 'list', '--json'],
      ['d1', 'migrations', 'apply', 'DB', '--remote'],
      ['secret', 'list', '--format', 'json'],
      ['deploy'],
      ADMINS,
      ['d1', 'execute', 'DB', '--remote', '--json', '--command', `SELECT COUNT(*) AS pending FROM setup_tokens WHERE token_hash = '${before.setupTokens[0]}'`],
    ]);
    expect(out).toContain(firstLink);
    expect({ ...readState(), uploads: 0 }).toEqual({ ...before, uploads: 0 });
  });

  it('once the admin exists, no link is printed and the kept one is forgotten', async () => {
    writeState({ admins: 1, setupTokens: [] });
    const before = readState();
    const { code, out, calls } = await deploy();
    expect(code, out).toBe(0);
    expect(calls.map((c) => c.argv).slice(-1)).toEqual([ADMINS]);
    expect(out).not.toContain('/setup#token=');
    expect(existsSync(paths.link)).toBe(false);
    expect({ ...readState(), uploads: 0 }).toEqual({ ...before, uploads: 0 });
  });

  it('a lost secret is generated again, alone; the other is left as it is', async () => {
    const before = readState();
    writeState({ secrets: { OR3_BASIC_AUTH_JWT_SECRET: before.secrets.OR3_BASIC_AUTH_JWT_SECRET! } });
    const { code, calls } = await deploy();
    expect(code).toBe(0);
    const upload = calls.find((c) => c.argv[0] === 'deploy')!;
    expect(Object.keys(upload.secretsFile!.values)).toEqual(['OR3_STORAGE_URL_SECRET']);
    expect(readState().secrets.OR3_BASIC_AUTH_JWT_SECRET).toBe(before.secrets.OR3_BASIC_AUTH_JWT_SECRET);
  });

  it('not logged in: says so and stops before anything else', async () => {
    writeState({ loggedIn: false });
    const { code, out, calls } = await deploy();
    expect(code).toBe(1);
    expect(out).toContain('npx wrangler login');
    expect(calls.map((c) => c.argv)).toEqual([['whoami', '--json']]);
    writeState({ loggedIn: true });
  });
});
