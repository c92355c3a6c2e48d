#!/usr/bin/env node
/**
 * The `[build] command` of wrangler.toml. Wrangler itself runs it before `wrangler dev` (and again
 * whenever a file under `[build] watch_dir` changes), before `wrangler deploy` (also `--dry-run`)
 * and `wrangler versions upload`, before `wrangler types`, and at every start of its test harness
 * (`createTestHarness`: client/test/harness.ts, bench/run.mjs). It says which in WRANGLER_COMMAND
 * (https://developers.cloudflare.com/workers/wrangler/custom-builds/):
 *
 *   types       nothing: types need neither the demo nor a database.
 *   dev         demo/dist is built when it is missing or older than its sources (so a restart or a
 *               harness start costs ~0.1 s), and the local D1 in .wrangler/state gets the
 *               migrations/d1 files it has not seen yet (`wrangler d1 migrations apply DB --local`).
 *   otherwise   (deploy, versions upload, or run by hand) demo/dist is built from scratch. Local state
 *               is never read or written, so a deploy from CI or a clean clone cannot fail on it.
 *
 * Test files start harnesses in parallel, so runs take a lock and the second one finds the work
 * done. Node >= 20, no dependencies besides vite (imported only when the demo needs a build).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const command = process.env.WRANGLER_COMMAND ?? '';
const dev = command === 'dev';
// Printed at the end in one write: wrangler prefixes each line it reads, blank ones too.
const lines = [];
const log = (msg) => lines.push(`wrangler-build (${command || 'by hand'}): ${msg}`);

if (command === 'types') process.exit(0);

const DEMO_SOURCES = ['demo/index.html', 'demo/vite.config.ts', 'demo/src', 'demo/public', 'client/src', 'protocol', 'package-lock.json'];
const DEMO_INDEX = join(root, 'demo/dist/index.html');
const D1_MIGRATIONS = join(root, 'migrations/d1');
// wrangler dev's default persistence directory; `wrangler dev --persist-to DIR` needs
// `wrangler d1 migrations apply DB --local --persist-to DIR` by hand.
const D1_STATE = join(root, '.wrangler/state/v3/d1');
const D1_STAMP = join(D1_STATE, 'or3-applied-migrations.txt');
const LOCK = join(root, '.wrangler/or3-build.lock');

try {
  await withLock(async () => {
    if (!dev || !demoIsCurrent()) await buildDemo();
    else log('demo/dist is up to date');
    if (dev) {
      migrateLocalD1();
      warnIfDevVarsHideDotEnv();
    }
  });
} finally {
  process.stdout.write(lines.join('\n'));
}

function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

function demoIsCurrent() {
  if (!existsSync(DEMO_INDEX)) return false;
  const built = statSync(DEMO_INDEX).mtimeMs;
  return DEMO_SOURCES.every((source) => newestMtime(join(root, source)) <= built);
}

async function buildDemo() {
  const started = Date.now();
  const { build } = await import('vite');
  await build({ configFile: join(root, 'demo/vite.config.ts'), logLevel: 'warn' });
  log(`built demo/dist in ${Date.now() - started} ms`);
}

/** Applies migrations/d1 to the local D1 unless the same files were applied already. */
function migrateLocalD1() {
  const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
  const files = readdirSync(D1_MIGRATIONS).filter((name) => name.endsWith('.sql'));
  // The first line changes with the way wrangler.toml names the database (by name since it lost
  // its placeholder id, which moved the local database), so an older stamp never hides a new file.
  const fingerprint = ['database: by name'].concat(files.sort().map((name) => `${name} ${sha256(join(D1_MIGRATIONS, name))}`)).join('\n');
  if (existsSync(D1_STAMP) && readFileSync(D1_STAMP, 'utf8') === fingerprint) {
    log('local D1 is up to date');
    return;
  }
  const started = Date.now();
  const env = { ...process.env, CI: 'true' }; // CI: no confirmation prompt
  delete env.WRANGLER_COMMAND;
  const wrangler = join(root, 'node_modules/wrangler/bin/wrangler.js');
  try {
    execFileSync(process.execPath, [wrangler, 'd1', 'migrations', 'apply', 'DB', '--local'], {
      cwd: root,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    console.error(`${err.stdout ?? ''}${err.stderr ?? ''}`);
    throw new Error('wrangler-build: `wrangler d1 migrations apply DB --local` failed (output above)');
  }
  mkdirSync(D1_STATE, { recursive: true });
  writeFileSync(D1_STAMP, fingerprint);
  log(`applied ${relative(root, D1_MIGRATIONS)} to the local D1 (.wrangler/state) in ${Date.now() - started} ms`);
}

/**
 * Wrangler reads `.dev.vars` *instead of* `.env` and `.env.local`; a `.dev.vars` without
 * ENVIRONMENT hides the committed development defaults and the Worker runs as production.
 */
function warnIfDevVarsHideDotEnv() {
  const devVars = join(root, '.dev.vars');
  if (!existsSync(devVars) || /^\s*ENVIRONMENT\s*=/m.test(readFileSync(devVars, 'utf8'))) return;
  log(
    'WARNING: .dev.vars exists, so wrangler ignores .env and .env.local and the Worker runs as production ' +
      '(503 misconfigured without secrets). Add ENVIRONMENT=development and OR3_BASIC_AUTH_REGISTRATION=open to .dev.vars, ' +
      'or move its lines to .env.local (see docs/configuration.md).',
  );
}

async function withLock(work) {
  mkdirSync(join(root, '.wrangler'), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (lockIsStale()) {
      rmSync(LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`wrangler-build: ${relative(root, LOCK)} is still held after 120 s; delete it if no build is running`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const release = () => rmSync(LOCK, { recursive: true, force: true });
  // wrangler stops an outdated build (a file changed again) with SIGTERM.
  process.once('SIGTERM', () => {
    release();
    process.exit(143);
  });
  process.once('SIGINT', () => {
    release();
    process.exit(130);
  });
  try {
    await work();
  } finally {
    release();
  }
}

/** A lock whose holder has exited, or one left half-made (no pid) for over 10 s. */
function lockIsStale() {
  let pid;
  try {
    pid = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
  } catch {
    try {
      return Date.now() - statSync(LOCK).mtimeMs > 10_000;
    } catch {
      return false; // released meanwhile
    }
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return err.code === 'ESRCH';
  }
}
