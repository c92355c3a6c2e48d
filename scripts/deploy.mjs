#!/usr/bin/env node
/**
 * `npm run deploy`: the whole deploy, first or fiftieth, after `npx wrangler login`
 * (docs/operations.md "Deploy"). Each step asks before it changes anything, so running it again
 * is safe and, once the deployment is set up, changes nothing but the uploaded code:
 *
 *   1. `wrangler whoami --json`                 logged in? (else: run `npx wrangler login`)
 *   2. `wrangler d1 list --json`                does the D1 database of wrangler.toml exist yet?
 *   3. `wrangler d1 migrations apply DB --remote` before the upload when it exists (new code may
 *      need the new schema), after it on the first deploy (which creates the database)
 *   4. `wrangler secret list --format json`     which of `[secrets] required` are set
 *   5. `wrangler deploy [--secrets-file F]`     uploads the Worker; wrangler finds the D1 database
 *      and R2 bucket by name or creates them (wrangler.toml has no ids); the secrets still missing
 *      are generated here (48 random bytes each, base64url), handed over in a 0600 temp file that
 *      is deleted at once, and never printed
 *   6. `wrangler d1 execute DB --remote …`      no admin yet? then a one-time setup link: its
 *      token's SHA-256 goes into D1 (setup_tokens), the link is printed and kept in
 *      .wrangler/or3-setup-link.json so a re-run prints the same link while it is unused
 *   7. GET <url>/api/health?deep=true           printed, retried while the new version spreads
 *
 *   npm run deploy -- --dry-run   builds the bundle (`wrangler deploy --dry-run`), prints the plan,
 *                                 touches no account
 *   npm run setup-link            step 6 alone (a new link if the old one was lost or used)
 *
 * OR3_WRANGLER names the wrangler executable (default: the project's node_modules/.bin/wrangler);
 * the test (scripts/deploy.test.ts) points it at a stand-in that records its calls, and
 * OR3_SETUP_LINK_FILE moves the kept link out of the project.
 * Node >= 20, no dependencies.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const dryRun = args.includes('--dry-run');
const setupLinkOnly = args.includes('--setup-link');
const wranglerBin = process.env.OR3_WRANGLER || join(root, 'node_modules/.bin/wrangler');
const SETUP_LINK_FILE = process.env.OR3_SETUP_LINK_FILE || join(root, '.wrangler/or3-setup-link.json');
const HEALTH_WAIT_MS = Number(process.env.OR3_DEPLOY_HEALTH_WAIT_MS ?? 60_000);

const say = (msg) => console.log(`deploy: ${msg}`);
class DeployError extends Error {}

/** Runs wrangler; its output is returned (and echoed when `echo`), a failure throws unless `allowFailure`. */
function wrangler(argv, { echo = false, allowFailure = false } = {}) {
  // CI=true: wrangler asks no questions (migrations apply would otherwise wait for a "yes").
  const result = spawnSync(wranglerBin, argv, { cwd: root, encoding: 'utf8', env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (echo) process.stdout.write(output.replace(/^/gm, '  | '));
  if (result.error) throw new DeployError(`could not run ${wranglerBin}: ${result.error.message}`);
  if (result.status !== 0 && !allowFailure) {
    if (!echo) process.stdout.write(output.replace(/^/gm, '  | '));
    throw new DeployError(`\`wrangler ${argv.join(' ')}\` failed (output above)`);
  }
  return { ok: result.status === 0, stdout: result.stdout ?? '', output };
}

/** The few wrangler.toml values this script needs, read without a TOML parser (the file's own layout). */
function readConfig() {
  const toml = readFileSync(join(root, 'wrangler.toml'), 'utf8');
  const databaseName = /\[\[d1_databases\]\][^[]*?database_name\s*=\s*"([^"]+)"/.exec(toml)?.[1];
  const required = /\[secrets\]\s*required\s*=\s*\[([^\]]*)\]/.exec(toml)?.[1];
  if (!databaseName) throw new DeployError('wrangler.toml has no [[d1_databases]] database_name');
  return { databaseName, requiredSecrets: [...(required ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]) };
}

/** The JSON wrangler printed (it may log a banner line before it). */
function parseJson(stdout, what) {
  const start = stdout.search(/^\s*[[{]/m);
  try {
    return JSON.parse(stdout.slice(start));
  } catch {
    throw new DeployError(`could not read ${what} from wrangler's output`);
  }
}

const sqlRows = (stdout) => parseJson(stdout, 'the D1 query result')[0]?.results ?? [];
const d1 = (sql, json = false) => wrangler(['d1', 'execute', 'DB', '--remote', ...(json ? ['--json'] : []), '--command', sql]);
const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function migrate() {
  say('applying D1 migrations (migrations/d1) to the remote database');
  wrangler(['d1', 'migrations', 'apply', 'DB', '--remote'], { echo: true });
}

/** Names of the required secrets not set on the Worker (all of them before its first deploy). */
function missingSecrets(requiredSecrets) {
  const listed = wrangler(['secret', 'list', '--format', 'json'], { allowFailure: true });
  if (!listed.ok) {
    if (!/Worker ".*" not found/.test(listed.output)) throw new DeployError(`\`wrangler secret list\` failed:\n${listed.output}`);
    return requiredSecrets;
  }
  const set = new Set(parseJson(listed.stdout, 'the secret list').map((s) => s.name));
  return requiredSecrets.filter((name) => !set.has(name));
}

/** `wrangler deploy`, with freshly generated values for `missing` secrets; returns the Worker's URL. */
function upload(missing) {
  let dir;
  const argv = ['deploy'];
  try {
    if (missing.length) {
      dir = mkdtempSync(join(tmpdir(), 'or3-deploy-'));
      const file = join(dir, 'secrets.json');
      const values = Object.fromEntries(missing.map((name) => [name, randomBytes(48).toString('base64url')]));
      writeFileSync(file, JSON.stringify(values), { mode: 0o600 });
      argv.push('--secrets-file', file);
      say(`generating ${missing.join(', ')} (random, uploaded with the Worker, not shown)`);
    }
    say('uploading the Worker (wrangler creates the D1 database and R2 bucket if they are missing)');
    const { stdout } = wrangler(argv, { echo: true });
    const after = stdout.slice(stdout.search(/^Deployed /m));
    return /^\s+(https?:\/\/\S+)\s*$/m.exec(after)?.[1] ?? null;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** Step 6: a one-time setup link while the deployment has no admin; null once it has one. */
function setupLink(url) {
  const [{ admins }] = sqlRows(d1('SELECT COUNT(*) AS admins FROM users WHERE is_admin = 1', true).stdout);
  if (admins > 0) {
    rmSync(SETUP_LINK_FILE, { force: true });
    say('the deployment has an admin: no setup link needed');
    return null;
  }
  const saved = existsSync(SETUP_LINK_FILE) ? JSON.parse(readFileSync(SETUP_LINK_FILE, 'utf8')) : null;
  if (saved?.url === url) {
    const [{ pending }] = sqlRows(d1(`SELECT COUNT(*) AS pending FROM setup_tokens WHERE token_hash = '${sha256(saved.token)}'`, true).stdout);
    if (pending > 0) return `${url}/setup#token=${saved.token}`;
  }
  const token = randomBytes(32).toString('base64url');
  // Hex digest and integer only: nothing user-supplied reaches the SQL text. Older links die here.
  d1(`DELETE FROM setup_tokens; INSERT INTO setup_tokens (token_hash, created_at) VALUES ('${sha256(token)}', ${Date.now()});`);
  mkdirSync(dirname(SETUP_LINK_FILE), { recursive: true });
  writeFileSync(SETUP_LINK_FILE, JSON.stringify({ url, token }), { mode: 0o600 });
  chmodSync(SETUP_LINK_FILE, 0o600);
  return `${url}/setup#token=${token}`;
}

async function deepHealth(url) {
  const deadline = Date.now() + HEALTH_WAIT_MS;
  let last = 'no answer';
  for (;;) {
    try {
      const res = await fetch(`${url}/api/health?deep=true`, { signal: AbortSignal.timeout(10_000) });
      const body = await res.json().catch(() => null);
      last = `HTTP ${res.status}${
        body?.providers
          ? ': ' +
            Object.entries(body.providers)
              .map(([k, p]) => `${k} ${p.available ? 'ok' : `DOWN (${p.error})`}`)
              .join(', ')
          : ''
      }`;
      if (res.ok && body?.status === 'ok') return { ok: true, summary: `ok (${last})` };
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) return { ok: false, summary: `not healthy: ${last}` };
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

function dryRunPlan(config) {
  say('dry run: building the bundle only (no account is touched)');
  wrangler(['deploy', '--dry-run', '--outdir', 'dist'], { echo: true });
  console.log(`
A real run would:
  - check the login (wrangler whoami --json)
  - find D1 "${config.databaseName}"; apply migrations/d1 before the upload if it exists, after it if not
  - set ${config.requiredSecrets.join(', ')} to random values where they are not set yet
  - upload the Worker; wrangler creates the D1 database and R2 bucket if they are missing
  - print a one-time setup link for the first admin while the deployment has none
  - print the URL and a deep health check`);
}

async function main() {
  const config = readConfig();
  if (dryRun) return dryRunPlan(config);
  // Without --json, whoami exits 0 even when not logged in.
  if (!wrangler(['whoami', '--json'], { allowFailure: true }).ok) throw new DeployError('not logged in to Cloudflare: run `npx wrangler login` first');

  if (setupLinkOnly) {
    const saved = existsSync(SETUP_LINK_FILE) ? JSON.parse(readFileSync(SETUP_LINK_FILE, 'utf8')) : null;
    const url = args.includes('--url') ? args[args.indexOf('--url') + 1] : saved?.url;
    if (!url) throw new DeployError('pass the deployment URL: npm run setup-link -- --url https://or3-edge.<you>.workers.dev');
    const link = setupLink(url.replace(/\/$/, ''));
    if (link) console.log(`\nCreate the first admin (one-time link, valid until used):\n  ${link}\n`);
    return;
  }

  const databases = parseJson(wrangler(['d1', 'list', '--json']).stdout, 'the D1 database list');
  const databaseExists = databases.some((db) => db.name === config.databaseName);
  if (databaseExists) migrate();
  const missing = missingSecrets(config.requiredSecrets);
  const url = upload(missing);
  if (!databaseExists) migrate();
  if (!url) {
    say('wrangler printed no URL (no workers.dev route?): run `npm run setup-link -- --url <your URL>` for the first admin');
    return;
  }
  const link = setupLink(url);
  const health = await deepHealth(url);
  console.log(`\nDeployed: ${url}`);
  console.log(`Health (${url}/api/health?deep=true): ${health.summary}`);
  if (link) console.log(`Create the first admin (one-time link, valid until used):\n  ${link}`);
  if (!health.ok) process.exitCode = 1;
}

main().catch((err) => {
  if (!(err instanceof DeployError)) throw err;
  console.error(`deploy: ${err.message}`);
  process.exitCode = 1;
});
