/**
 * The SDK as a package (docs/client.md "Install"): `npm pack` of client/ (what `npm run
 * pack:client` makes), installed from the tarball into a fresh Node app and a fresh Vite app,
 * each run against the real Worker; the Node app also runs under the machine's Node 20 (no
 * global WebSocket): realtime 'unavailable' with a warning, then live with `ws` as the option. npm installs with --prefer-offline, so the registry is
 * asked only for what the local npm cache lacks (dexie, fake-indexeddb, @noble/hashes are there
 * after the project's own `npm ci`).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer, uniqueEmail } from './harness';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const here = fileURLToPath(new URL('./package/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The machine's Node 20 (npm scripts run the pinned Node 22 instead), for the runtime without a global WebSocket. */
const NODE20 = process.env.NODE20_PATH ?? (existsSync('/usr/bin/node') ? '/usr/bin/node' : null);
const dir = mkdtempSync(join(tmpdir(), 'or3-sdk-package-'));
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
let server: TestServer;
let tarball = '';

/** npm, run by the same Node as this test (the project's pinned Node 22 under `npm test`). */
const npm = (args: string[], cwd: string) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd,
    env: { ...process.env, npm_config_update_notifier: 'false' },
    maxBuffer: 1 << 24,
  });

/** A fresh app directory whose dependencies are the tarball and the given packages (at the project's versions). */
async function freshApp(name: string, deps: string[]) {
  const app = join(dir, name);
  mkdirSync(app);
  const all = { ...rootPackage.dependencies, ...rootPackage.devDependencies };
  const dependencies = Object.fromEntries([['@or3-edge/client', `file:${tarball}`], ...deps.map((d) => [d, all[d]])]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module', dependencies }));
  await npm(['install'], app);
  return app;
}

beforeAll(async () => {
  // OR3_ALLOWED_ORIGINS "*" (development only): the Vite app is served from its own origin.
  server = await startServer({ OR3_ALLOWED_ORIGINS: '*' });
  await run('npm', ['run', 'build:client'], { cwd: root });
  await npm(['pack', './client', '--pack-destination', dir], root);
  tarball = join(
    dir,
    readdirSync(dir).find((f) => f.endsWith('.tgz'))!,
  );
}, 180_000);
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('@or3-edge/client as an installed package', () => {
  it('the tarball holds the ESM build, its declarations and the README, nothing else', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.trim().split('\n');
    // Built with the wire contract beside it (protocol/, shared with the server): dist/client/src/ and dist/protocol/.
    expect(files).toContain('package/dist/client/src/index.js');
    expect(files).toContain('package/dist/client/src/index.d.ts');
    expect(files).toContain('package/dist/protocol/sync.js');
    expect(files).toContain('package/README.md');
    expect(files.filter((f) => !/^package\/(dist\/(client\/src|protocol)\/[\w-]+\.(js|d\.ts)|README\.md|package\.json)$/.test(f))).toEqual([]);
    const manifest = JSON.parse((await run('tar', ['-xzOf', tarball, 'package/package.json'])).stdout);
    expect(manifest).toMatchObject({
      name: '@or3-edge/client',
      type: 'module',
      types: './dist/client/src/index.d.ts',
      peerDependencies: { dexie: expect.any(String) },
    });
    expect(manifest.exports['.']).toMatchObject({ types: './dist/client/src/index.d.ts', import: './dist/client/src/index.js' });
  });

  it('a fresh Node app installs it and syncs a message between two devices, realtime live', async () => {
    const app = await freshApp('node-app', ['dexie', 'fake-indexeddb', 'ws']);
    copyFileSync(join(here, 'node-app.mjs'), join(app, 'app.mjs'));
    const { stdout } = await run(process.execPath, ['app.mjs', server.url, uniqueEmail('node'), 'correct horse battery staple'], { cwd: app });
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ message: 'hello from node', realtime: 'live', reason: null, pending: 0 });

    // Node 20 (the machine's own node, when it is one): no global WebSocket. Without the option
    // the SDK syncs by polling and says so; with `ws` as the option, realtime is live.
    const node20 = NODE20 && (await run(NODE20, ['--version'])).stdout.startsWith('v20.') ? NODE20 : null;
    if (!node20) return console.warn(`package test: no Node 20 at ${NODE20}; the no-WebSocket run was skipped`);
    const bare = await run(node20, ['app.mjs', server.url, uniqueEmail('node20'), 'correct horse battery staple', 'none'], { cwd: app });
    expect(JSON.parse(bare.stdout.trim().split('\n').pop()!)).toMatchObject({
      message: 'hello from node',
      realtime: 'unavailable',
      reason: expect.stringMatching(/no global WebSocket/),
      pending: 0,
    });
    expect(bare.stderr).toContain('@or3-edge/client: This runtime has no global WebSocket');
    const withWs = await run(node20, ['app.mjs', server.url, uniqueEmail('node20ws'), 'correct horse battery staple', 'ws'], { cwd: app });
    expect(JSON.parse(withWs.stdout.trim().split('\n').pop()!)).toMatchObject({ message: 'hello from node', realtime: 'live', pending: 0 });
  }, 180_000);

  // Without a browser: fail in CI (which installs it), skip elsewhere, as the e2e tests do.
  it.skipIf(!existsSync(CHROMIUM) && !process.env.CI)(
    'a fresh Vite app installs it, builds, and syncs from Chromium',
    async () => {
      const app = await freshApp('vite-app', ['dexie']);
      copyFileSync(join(here, 'vite-app.ts'), join(app, 'main.ts'));
      writeFileSync(
        join(app, 'index.html'),
        '<!doctype html><html><body><pre id="out">starting</pre><script type="module" src="/main.ts"></script></body></html>',
      );
      const { build } = await import('vite');
      await build({ root: app, logLevel: 'warn', configFile: false, build: { outDir: join(app, 'dist'), target: 'es2022' } });

      const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript' };
      const web: Server = createServer((req, res) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        try {
          const body = readFileSync(join(app, 'dist', path === '/' ? 'index.html' : path));
          res.writeHead(200, { 'content-type': types[extname(path) || '.html'] ?? 'application/octet-stream' }).end(body);
        } catch {
          res.writeHead(404).end();
        }
      });
      await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
      try {
        const page = await browser.newPage();
        const origin = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
        await page.goto(`${origin}/?server=${encodeURIComponent(server.url.replace(/\/$/, ''))}&email=${uniqueEmail('vite')}`);
        await expect.poll(() => page.locator('#out').textContent(), { timeout: 30_000 }).not.toBe('starting');
        expect(JSON.parse((await page.locator('#out').textContent())!)).toEqual({ phase: 'idle', pending: 0, hasSynced: true });
      } finally {
        await browser.close();
        web.close();
      }
    },
    180_000,
  );
});
