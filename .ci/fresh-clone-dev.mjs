#!/usr/bin/env node
/**
 * Proves the README's promise that plain `npx wrangler dev` on a fresh clone serves the whole
 * stack after `npm ci` alone: no demo build, no migrations, no secrets, no .dev.vars, no flags
 * (but a free port). Clones this repository's HEAD into a temporary directory, runs `npm ci`,
 * starts `npx wrangler dev --port <free>` in its own process group, then checks
 *
 *   GET  /api/health?deep=true            ok (D1, the Durable Object and R2 answer)
 *   POST /api/basic-auth/register         a new user (open registration, local D1 migrated)
 *   POST /api/basic-auth/sign-in          an access token (development secrets stand in)
 *   GET  /api/auth/session                that user, with a default workspace
 *   GET  /  and its script                the built demo (wrangler's [build] step ran)
 *
 * and stops the server. On failure it prints the server's log. Node >= 20 runs this script; the
 * clone's npx runs wrangler with the project's own Node 22.
 *
 *   node .ci/fresh-clone-dev.mjs          (KEEP=1 keeps the clone for a look afterwards)
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const READY_TIMEOUT_MS = 90_000;
const REQUEST_TIMEOUT_MS = 15_000;
const started = Date.now();
const say = (msg) => console.log(`[fresh-clone-dev +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

const dir = mkdtempSync(join(tmpdir(), 'or3-fresh-clone-'));
const logFile = join(dir, 'wrangler-dev.log');
let server = null;

async function main() {
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  if (execFileSync('git', ['status', '--porcelain'], { cwd: root, encoding: 'utf8' }).trim()) {
    say('note: the work tree has uncommitted changes; this checks the committed HEAD only');
  }
  const clone = join(dir, 'repo');
  execFileSync('git', ['clone', '--quiet', '--no-checkout', root, clone], { stdio: 'inherit' });
  execFileSync('git', ['checkout', '--quiet', head], { cwd: clone, stdio: 'inherit' });
  say(`cloned ${head.slice(0, 12)} into ${clone}`);

  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: clone, stdio: 'inherit', timeout: 300_000 });
  say('npm ci done');

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const out = openSync(logFile, 'w');
  // Its own process group (detached), so stopping it stops workerd and the build too.
  server = spawn('npx', ['wrangler', 'dev', '--port', String(port)], {
    cwd: clone,
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false' },
  });
  const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve(`wrangler dev exited (${signal ?? code})`)));
  say(`started npx wrangler dev --port ${port} (pid ${server.pid})`);

  const health = await Promise.race([waitForHealth(base), exited.then((why) => Promise.reject(new Error(why)))]);
  say(`healthy: ${JSON.stringify(health.providers)}`);

  const email = `fresh-${Date.now().toString(36)}@example.com`;
  const password = 'correct horse battery staple';
  await call(base, 'POST', '/api/basic-auth/register', { body: { email, password, confirmPassword: password } });
  const signIn = await call(base, 'POST', '/api/basic-auth/sign-in', { body: { email, password }, headers: { 'x-or3-token-transport': 'bearer' } });
  if (typeof signIn.accessToken !== 'string') throw new Error(`sign-in returned no access token: ${JSON.stringify(signIn)}`);
  const { session } = await call(base, 'GET', '/api/auth/session', { headers: { authorization: `Bearer ${signIn.accessToken}` } });
  if (session?.user?.email !== email || !session.workspace?.id) throw new Error(`unexpected session: ${JSON.stringify(session)}`);
  say(`registered, signed in and read the session of ${email} (workspace ${session.workspace.id})`);

  const index = await fetch(`${base}/`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const html = await index.text();
  const script = html.match(/<script type="module"[^>]* src="(\/assets\/[^"]+\.js)"/)?.[1];
  if (index.status !== 200 || !html.includes('<div id="app"') || !script)
    throw new Error(`GET / is not the built demo (${index.status}): ${html.slice(0, 300)}`);
  const js = await fetch(`${base}${script}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  await js.arrayBuffer();
  if (js.status !== 200) throw new Error(`GET ${script}: ${js.status}`);
  say(`GET / serves the built demo (${script})`);
}

async function waitForHealth(base) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/api/health?deep=true`, { signal: AbortSignal.timeout(5_000) });
      const body = await res.json();
      if (res.ok && body.status === 'ok') return body;
      last = `${res.status} ${JSON.stringify(body)}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`/api/health?deep=true not ok within ${READY_TIMEOUT_MS / 1000} s (last: ${last})`);
}

async function call(base, method, path, { body, headers = {} } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const gone = new Promise((resolve) => server.once('exit', resolve));
  const kill = (signal) => {
    try {
      process.kill(-server.pid, signal);
    } catch {
      // the group is gone already
    }
  };
  kill('SIGTERM');
  if (await Promise.race([gone.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 5_000))])) return;
  kill('SIGKILL');
  await gone;
}

function printServerLog() {
  try {
    const lines = readFileSync(logFile, 'utf8').split('\n');
    console.error(`---- wrangler dev log (last ${Math.min(lines.length, 150)} lines of ${logFile}) ----`);
    console.error(lines.slice(-150).join('\n'));
    console.error('---- end of log ----');
  } catch {
    console.error('(no server log)');
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await stopServer();
    process.exit(1);
  });
}

let status = 0;
try {
  await main();
  say('ok');
} catch (err) {
  status = 1;
  console.error(`[fresh-clone-dev] FAILED: ${err.message}`);
  printServerLog();
} finally {
  await stopServer();
  if (process.env.KEEP) say(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
