#!/usr/bin/env node
/**
 * `npm run bench`: the scenarios of PERFORMANCE.md against the real Worker (this repo's
 * wrangler.toml, local workerd, D1, R2, Durable Objects), each reported as a ratio to a limit
 * measured in the same run by the bench-only Worker in bench/ (raw DO SQLite, bare HTTP, raw R2).
 *
 *   npm run bench                      every scenario, full sizes (several minutes)
 *   npm run bench -- --quick           small sizes, under a minute (CI smoke)
 *   npm run bench -- --scenario pull   one scenario (repeatable); limits it needs are measured too
 *   npm run bench -- --scenario socket-frames / sign-in   the security figures alone (docs/security.md)
 *   npm run bench -- --scenario webhooks --webhooks-no-consumer   the push path with hooks alone (the
 *                                      default webhooks run measures it this way too, in a child run)
 *
 * Prints progress to stderr, one table to stdout, and writes bench/results.json.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { readD1Migrations } from '@cloudflare/vitest-plugin';
import { createTestHarness } from 'wrangler';
import { pullDuringRefusedFrames, signInTiming } from './security.mjs';
import { webhooksScenario } from './webhooks.mjs';
import { centralScenario } from './central.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
if (Number(process.versions.node.split('.')[0]) < 22) {
  console.error(`bench: needs Node >= 22 (this is ${process.version}); run it as \`npm run bench\`, which uses the project's Node 22`);
  process.exit(1);
}
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const only = argv.flatMap((a, i) => (a === '--scenario' ? [argv[i + 1]] : a.startsWith('--scenario=') ? [a.slice(11)] : []));
const want = (name) => only.length === 0 || only.includes(name);

// Sizes: full per PERFORMANCE.md; quick divides them so the whole run stays under a minute.
const S = quick
  ? {
      pushOps: 2_000,
      unbatchedPerDevice: 25,
      pullLog: 10_000,
      coldRows: 1_000,
      coldEdits: 10,
      growthSmall: 2_000,
      growthLarge: 10_000,
      growthProbe: 500,
      realtimeRounds: 20,
      fanoutOps: 1_000,
      blobMiB: 5,
      clientRows: 2_000,
      deltaRounds: 10,
      webhookOps: 400,
    }
  : {
      pushOps: 20_000,
      unbatchedPerDevice: 125,
      pullLog: 200_000,
      coldRows: 10_000,
      coldEdits: 10,
      growthSmall: 10_000,
      growthLarge: 200_000,
      growthProbe: 2_000,
      realtimeRounds: 100,
      fanoutOps: 5_000,
      blobMiB: 50,
      clientRows: 100_000,
      deltaRounds: 20,
      webhookOps: 3_000,
    };
const PAYLOAD_BYTES = 300;

const log = (msg) => process.stderr.write(`${msg}\n`);
const now = () => performance.now();
const pct = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const median = (values) => pct(values, 50);
const round = (n, digits = 0) => Number(n.toFixed(digits));

// -- the servers ---------------------------------------------------------------------------

log(`bench: starting the Worker and the bench Worker (${quick ? 'quick' : 'full'} sizes)…`);
const DEV_VARS = {
  ENVIRONMENT: 'development',
  OR3_BASIC_AUTH_REGISTRATION: 'open',
  // The bench measures throughput, not the per-user rate limits.
  OR3_RATE_LIMIT_OVERRIDES_JSON: JSON.stringify({ push: 100_000, pull: 100_000, updateCursor: 100_000, gc: 10_000 }), // requests per user per minute (the cap)
  // The webhooks scenario delivers to a receiver on 127.0.0.1 (bench/webhooks.mjs).
  OR3_WEBHOOK_ALLOW_LOOPBACK: 'true',
};
/**
 * `--webhooks-no-consumer`: the app without its Queue consumers (a copy of wrangler.toml, written
 * for this run and removed after it), so the webhooks scenario measures what the push path pays to
 * enqueue with nothing delivering meanwhile (docs/performance.md "Webhooks").
 */
const noConsumer = argv.includes('--webhooks-no-consumer');
/** `--rows-out <file>`: a child run (the webhooks scenario's push path) writes its rows there instead of the table and results.json. */
const rowsOut = argv.flatMap((a, i) => (a === '--rows-out' ? [argv[i + 1]] : []))[0];
const appConfig = noConsumer ? '.wrangler.bench-no-consumer.toml' : './wrangler.toml';
if (noConsumer) {
  const toml = readFileSync(`${root}/wrangler.toml`, 'utf8').replace(/\[\[queues\.consumers\]\]\n(?:[^\n[#]+\n)*/g, '');
  writeFileSync(`${root}/${appConfig}`, toml);
  process.on('exit', () => rmSync(`${root}/${appConfig}`, { force: true }));
}
const server = createTestHarness({
  root,
  workers: [
    {
      configPath: appConfig,
      vars: DEV_VARS,
    },
    { configPath: './bench/wrangler.toml' },
  ],
});
const { url } = await server.listen();
const app = server.getWorker();
const bench = server.getWorker('or3-edge-bench');
const appEnv = await app.getEnv();
const benchEnv = await bench.getEnv();
for (const migration of await readD1Migrations(`${root}/migrations/d1`)) {
  await appEnv.DB.batch(migration.queries.map((q) => appEnv.DB.prepare(q)));
}

let ipCounter = 1;
async function call(method, path, token, body) {
  const res = await app.fetch(new URL(path, url), {
    method,
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': `10.77.0.${ipCounter}`, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** A new user with its default workspace, signed in with a bearer token. */
async function user() {
  ipCounter = (ipCounter % 250) + 1; // the sign-in rate limit counts per address
  const email = `bench-${crypto.randomUUID().slice(0, 8)}@example.com`;
  const password = 'correct horse battery staple';
  await call('POST', '/api/basic-auth/register', null, { email, password, confirmPassword: password });
  const res = await app.fetch(new URL('/api/basic-auth/sign-in', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': `10.77.1.${ipCounter}` },
    body: JSON.stringify({ email, password }),
  });
  const { accessToken } = await res.json();
  const { session } = await call('GET', '/api/auth/session', accessToken);
  return { token: accessToken, workspaceId: session.workspace.id, email, password };
}

/** A second device (its own session) of the same user. */
async function secondDevice(u) {
  const res = await app.fetch(new URL('/api/basic-auth/sign-in', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer', 'cf-connecting-ip': `10.77.2.${ipCounter}` },
    body: JSON.stringify({ email: u.email, password: u.password }),
  });
  const { accessToken } = await res.json();
  return { token: accessToken, workspaceId: u.workspaceId };
}

let seq = 0;
const filler = 'x'.repeat(PAYLOAD_BYTES - 170);
function op(pk = `m${++seq}`) {
  const t = Math.floor(Date.now() / 1000);
  return {
    tableName: 'messages',
    operation: 'put',
    pk,
    payload: { id: pk, thread_id: 't1', role: 'user', index: seq, order_key: `a${seq}`, deleted: false, created_at: t, updated_at: t, clock: 1, data: filler },
    stamp: {
      deviceId: 'bench-device',
      opId: crypto.randomUUID(),
      hlc: `${String(Date.now()).padStart(15, '0')}:${String(seq % 999_999).padStart(6, '0')}:bench`,
      clock: 1,
    },
  };
}

/** An edit of an existing row: the same pk at a higher clock. */
function editOp(pk, clock) {
  const o = op(pk);
  return { ...o, payload: { ...o.payload, clock, data: `${clock}:${filler}` }, stamp: { ...o.stamp, clock } };
}

async function pushOps(u, count, batch = 100, onProgress) {
  for (let done = 0; done < count; done += batch) {
    await call('POST', '/api/sync/push', u.token, {
      scope: { workspaceId: u.workspaceId },
      ops: Array.from({ length: Math.min(batch, count - done) }, () => op()),
    });
    onProgress?.(done + batch);
  }
}

async function pullAll(u, limit = 1000) {
  let cursor = 0;
  let rows = 0;
  for (;;) {
    const page = await call('POST', '/api/sync/pull', u.token, { scope: { workspaceId: u.workspaceId }, cursor, limit });
    rows += page.changes.length;
    cursor = page.nextCursor;
    if (!page.hasMore) return rows;
  }
}

const progress = (label, total) => {
  let last = 0;
  return (done) => {
    if (done - last >= total / 10 || done >= total) {
      last = done;
      log(`  ${label}: ${Math.min(done, total).toLocaleString()}/${total.toLocaleString()}`);
    }
  };
};

/** A socket to the user's workspace, opened with a ticket, with request/answer helpers. */
async function openSocket(u) {
  const { ticket } = await call('POST', '/api/sync/ws-ticket', u.token, { workspaceId: u.workspaceId });
  const wsUrl = new URL('/api/sync/ws', url);
  wsUrl.protocol = 'ws:';
  wsUrl.searchParams.set('workspaceId', u.workspaceId);
  wsUrl.searchParams.set('ticket', ticket);
  const ws = new WebSocket(wsUrl);
  const waiters = new Map();
  let onAny = null;
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'hello') waiters.get('hello')?.(msg);
    else if (msg.id && waiters.has(msg.id)) waiters.get(msg.id)(msg);
    onAny?.(msg);
  };
  await new Promise((resolve) => waiters.set('hello', resolve));
  const request = (message) =>
    new Promise((resolve, reject) => {
      waiters.set(message.id, (msg) => (msg.type === 'error' ? reject(new Error(`${msg.error}: ${msg.message}`)) : resolve(msg)));
      ws.send(JSON.stringify(message));
    });
  return { ws, request, waiters, setOnAny: (f) => (onAny = f) };
}

// -- limits --------------------------------------------------------------------------------

const limits = {};
const results = [];
const row = (scenario, figure, unit, limitName, limit, ratio, bar, pass, extra = {}) => {
  results.push({
    scenario,
    figure: round(figure, 2),
    unit,
    limit: limit === null ? null : round(limit, 2),
    limitName,
    ratio: ratio === null ? null : round(ratio, 2),
    bar,
    pass,
    ...extra,
  });
  log(`  → ${scenario}: ${round(figure, 1)} ${unit}${ratio === null ? '' : ` (${round(ratio, 2)} × ${limitName})`} ${pass ? 'PASS' : 'SHORT'}`);
};

/**
 * Two reported rows beside a pull scenario's: the bare transport itself as a ratio to the raw
 * scan (about what any implementation gets for moving those pages in this harness), and the
 * scenario as a share of it (what our own code costs on top).
 */
/**
 * The bare transport (docs/performance.md "The bare transport"): the raw log's pages (about the
 * same bytes per row, pages of 1000) served with nothing but the read, over HTTP through a bare
 * Worker or over a bare hibernatable socket, received and parsed here as the scenarios do.
 * Measured in passes alternating with the scenario's own (`againstBare`): limits measured
 * minutes apart on this machine differ by more than the ratio being read.
 */
const BARE_PASSES = 3;

/**
 * Runs a pull scenario's `pass` (resolving to rows/s) and its bare transport alternately,
 * BARE_PASSES times: the medians of both, and of the per-pass ratios.
 */
async function againstBare(transport, pass) {
  const ours = [];
  const bares = [];
  const ratios = [];
  for (let i = 0; i < BARE_PASSES; i++) {
    const c = transport === 'socket' ? await rawSocketPull(limits.scanName) : await rawHttpPull(limits.scanName);
    const o = await pass();
    log(`  pass ${i + 1}: ${round(o)} rows/s, bare transport ${round(c)} rows/s (${round(o / c, 2)})`);
    ours.push(o);
    bares.push(c);
    ratios.push(o / c);
  }
  return { rate: median(ours), bare: median(bares), ratio: median(ratios) };
}

function bareRows(scenario, measured, transport, extra = {}) {
  const { bare, ratio } = measured;
  row(`  bare transport: the raw log's pages ${transport}`, bare, 'rows/s', 'raw DO scan', limits.rawScan, bare / limits.rawScan, 'reported', true, extra);
  row(`  ${scenario} ÷ bare transport (median of ${BARE_PASSES} alternating passes)`, ratio, '×', null, null, null, 'reported', true);
}

async function rawWriteRate(name, count, durableEach = false) {
  const stub = benchEnv.RAW.getByName(name);
  await stub.rows(); // the object is up (migrated) before the clock starts
  const t0 = now();
  await stub.write(count, PAYLOAD_BYTES, 100, durableEach);
  return count / ((now() - t0) / 1000);
}

/** Rows per second a client pulls the raw log at over HTTP, one page of 1000 at a time. */
async function rawHttpPull(name) {
  const t0 = now();
  let rows = 0;
  for (let cursor = 0; ;) {
    const text = await (await bench.fetch(new URL(`/raw-pull?name=${name}&cursor=${cursor}`, url))).text();
    const page = JSON.parse(text);
    limits.rawPageBytes ??= text.length; // the first page's size, beside ours (the pull scenario's row)
    rows += page.changes.length;
    cursor = page.nextCursor;
    if (!page.hasMore) return rows / ((now() - t0) / 1000);
  }
}

/** Rows per second the raw log streams at over a hibernatable socket, window 4, acknowledged page by page. */
async function rawSocketPull(name) {
  // Through the harness's URL, like the app's sockets (bench/wrangler.toml routes this path here).
  const wsUrl = new URL(`/raw-pull?name=${name}`, url);
  wsUrl.protocol = 'ws:';
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = reject)));
  const t0 = now();
  let rows = 0;
  await new Promise((resolve) => {
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(ev.data);
      rows += msg.changes.length;
      if (!msg.hasMore) return resolve();
      ws.send(JSON.stringify({ type: 'ack', id: 'cold', cursor: msg.nextCursor }));
    });
    ws.send(JSON.stringify({ type: 'pull', id: 'cold', cursor: 0, window: 4 }));
  });
  ws.close();
  return rows / ((now() - t0) / 1000);
}

async function measureLimits() {
  log('limits:');
  limits.rawWrite = await rawWriteRate(`w-${crypto.randomUUID()}`, S.pushOps);
  log(`  raw DO SQLite write: ${round(limits.rawWrite)} ops/s`);
  if (want('socket')) {
    // Reported beside the socket push: the same loop with every 100 ops made durable before the next.
    limits.rawWriteDurable = await rawWriteRate(`wd-${crypto.randomUUID()}`, S.pushOps, true);
    log(`  raw DO SQLite write, durable every 100 ops: ${round(limits.rawWriteDurable)} ops/s`);
  }
  const scanName = `s-${crypto.randomUUID()}`;
  await benchEnv.RAW.getByName(scanName).write(S.pullLog, PAYLOAD_BYTES);
  await benchEnv.RAW.getByName(scanName).scan(1000); // warm the page cache, as a live log is
  const t0 = now();
  const scanned = await benchEnv.RAW.getByName(scanName).scan(1000);
  limits.rawScan = scanned / ((now() - t0) / 1000);
  log(`  raw DO SQLite scan: ${round(limits.rawScan)} rows/s over ${scanned.toLocaleString()} rows`);
  // The bare transport reads this log too, in passes alternating with its scenarios'.
  limits.scanName = scanName;
  if (want('pull') || want('socket') || want('snapshot')) {
    await rawHttpPull(scanName); // warm both paths once
    await rawSocketPull(scanName);
  }
  const times = [];
  for (let i = 0; i < 200; i++) {
    const t = now();
    await (await bench.fetch(new URL('/empty', url))).json();
    times.push(now() - t);
  }
  limits.httpP50 = median(times);
  limits.httpP99 = pct(times, 99);
  log(`  bare HTTP round trip: p50 ${round(limits.httpP50, 2)} ms, p99 ${round(limits.httpP99, 2)} ms`);
  const r2 = await (await bench.fetch(new URL(`/r2?size=${S.blobMiB * 1024 * 1024}`, url))).json();
  limits.r2PutMBps = S.blobMiB / (r2.putMs / 1000);
  log(`  raw R2 put: ${round(limits.r2PutMBps, 1)} MB/s (${S.blobMiB} MiB)`);
}

// -- scenarios -----------------------------------------------------------------------------
import WsLib from 'ws';
try {
  const u = await user();
  const N = Number(process.env.PULL_LOG ?? 100000);
  async function sock(deflate) {
    const { ticket } = await call('POST', '/api/sync/ws-ticket', u.token, { workspaceId: u.workspaceId });
    const wsUrl = new URL('/api/sync/ws', url); wsUrl.protocol = 'ws:';
    wsUrl.searchParams.set('workspaceId', u.workspaceId); wsUrl.searchParams.set('ticket', ticket);
    const ws = new WsLib(wsUrl, { perMessageDeflate: deflate });
    const handlers = new Set();
    ws.on('message', (d) => { const m = JSON.parse(d.toString()); for (const h of handlers) h(m); });
    await new Promise((r) => ws.once('open', r));
    return { ws, handlers, ext: ws.extensions };
  }
  async function push(deflate, total, batch) {
    const s = await sock(deflate);
    const t0 = now();
    for (let i = 0; i < total / batch; i++) {
      const id = `p${i}`;
      const done = new Promise((r) => { const h = (m) => { if (m.id === id) { s.handlers.delete(h); r(); } }; s.handlers.add(h); });
      s.ws.send(JSON.stringify({ type: 'push', id, echo: false, ops: Array.from({ length: batch }, () => op()) }));
      await done;
    }
    const rate = total / ((now() - t0) / 1000); s.ws.close(); return rate;
  }
  async function pull(deflate) {
    const s = await sock(deflate);
    const t0 = now(); let rows = 0;
    await new Promise((resolve) => {
      s.handlers.add((m) => { if (m.id !== 'cold') return; rows += m.changes.length; if (!m.hasMore) return resolve(); s.ws.send(JSON.stringify({ type: 'ack', id: 'cold', cursor: m.nextCursor })); });
      s.ws.send(JSON.stringify({ type: 'pull', id: 'cold', cursor: 0, limit: 1000, window: 4 }));
    });
    const rate = rows / ((now() - t0) / 1000); s.ws.close(); return rate;
  }
  log('ext on: ' + (await sock(true)).ext + ' / off: ' + (await sock(false)).ext);
  await push(true, N, 1000);
  for (let r = 0; r < 3; r++) {
    for (const d of [true, false]) log(`deflate ${d}: pull ${round(await pull(d))} rows/s, push100 ${round(await push(d, 10000, 100))} ops/s, push1000 ${round(await push(d, 20000, 1000))} ops/s`);
  }
} finally { await server.close(); }
