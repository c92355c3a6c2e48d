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
import { compressionScenario } from './compression.mjs';

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
      compressionRows: 5_000,
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
      compressionRows: 50_000,
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

/**
 * Two reported rows beside a pull scenario's: the bare transport itself as a ratio to the raw
 * scan (about what any implementation gets for moving those pages in this harness), and the
 * scenario as a share of it (what our own code costs on top).
 */
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

const scenarios = {
  async 'push-batched'() {
    const u = await user();
    const t0 = now();
    await pushOps(u, S.pushOps, 100, progress('push-batched', S.pushOps));
    const rate = S.pushOps / ((now() - t0) / 1000);
    row('push-batched', rate, 'ops/s', 'raw DO write', limits.rawWrite, rate / limits.rawWrite, '≥ 0.5', rate / limits.rawWrite >= 0.5);
  },

  async 'push-unbatched'() {
    const u = await user();
    const times = [];
    const t0 = now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = 0; i < S.unbatchedPerDevice; i++) {
          const t = now();
          await call('POST', '/api/sync/push', u.token, { scope: { workspaceId: u.workspaceId }, ops: [op()] });
          times.push(now() - t);
        }
      }),
    );
    const rate = times.length / ((now() - t0) / 1000);
    const p99 = pct(times, 99);
    row('push-unbatched (8 devices)', p99, 'ms p99', 'bare HTTP p99', limits.httpP99, p99 / limits.httpP99, '≤ 5', p99 / limits.httpP99 <= 5, {
      opsPerSecond: round(rate),
      p50: round(median(times), 2),
    });
  },

  async pull() {
    const u = await user();
    log(`  pull: building a ${S.pullLog.toLocaleString()}-op log…`);
    await pushOps(u, S.pullLog, 100, progress('pull log', S.pullLog));
    const measured = await againstBare('http', async () => {
      const t0 = now();
      const rows = await pullAll(u, 1000);
      return rows / ((now() - t0) / 1000);
    });
    const { rate } = measured;
    row('pull (pages of 1000)', rate, 'rows/s', 'raw DO scan', limits.rawScan, rate / limits.rawScan, '≥ 0.3', rate / limits.rawScan >= 0.3);
    // The pages compared carry about the same bytes: ours (the first page, as the client receives it) and the bare transport's.
    const first = await app.fetch(new URL('/api/sync/pull', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ scope: { workspaceId: u.workspaceId }, cursor: 0, limit: 1000 }),
    });
    const pageBytes = (await first.text()).length;
    log(`  a page of 1000: ours ${pageBytes.toLocaleString()} bytes, the bare transport's ${limits.rawPageBytes.toLocaleString()}`);
    bareRows('pull', measured, 'over HTTP', { pageBytes: limits.rawPageBytes, oursPageBytes: pageBytes });
    state.pullUser = u;
  },

  async 'cold-start'() {
    // A device starting from cursor 0 on a workspace whose rows were each edited many times:
    // how many changes it is served, and how fast it reaches the live state (API.md "Pull is
    // compacted": each key once, its winner).
    const u = await user();
    const total = S.coldRows * S.coldEdits;
    log(`  cold-start: ${S.coldRows.toLocaleString()} rows × ${S.coldEdits} edits…`);
    const report = progress('cold-start ops', total);
    for (let edit = 1; edit <= S.coldEdits; edit++) {
      for (let i = 0; i < S.coldRows; i += 100) {
        const ops = Array.from({ length: Math.min(100, S.coldRows - i) }, (_, k) => editOp(`cold${i + k}`, edit));
        await call('POST', '/api/sync/push', u.token, { scope: { workspaceId: u.workspaceId }, ops });
        report((edit - 1) * S.coldRows + i + ops.length);
      }
    }
    const t0 = now();
    let cursor = 0;
    let served = 0;
    const live = new Map();
    for (;;) {
      const page = await call('POST', '/api/sync/pull', u.token, { scope: { workspaceId: u.workspaceId }, cursor, limit: 1000 });
      served += page.changes.length;
      for (const c of page.changes) {
        const seen = live.get(c.pk);
        if (!seen || c.stamp.clock >= seen) live.set(c.pk, c.stamp.clock);
      }
      cursor = page.nextCursor;
      if (!page.hasMore) break;
    }
    const seconds = (now() - t0) / 1000;
    if (live.size !== S.coldRows || [...live.values()].some((clock) => clock !== S.coldEdits))
      throw new Error('cold-start: the pull did not reach the live state');
    const rate = S.coldRows / seconds;
    row(
      `cold start: ${S.coldRows.toLocaleString()} rows × ${S.coldEdits} edits, changes served`,
      served,
      'changes',
      'live rows',
      S.coldRows,
      served / S.coldRows,
      'reported',
      true,
    );
    row(`cold start: live rows/s (pages of 1000)`, rate, 'rows/s', 'raw DO scan', limits.rawScan, rate / limits.rawScan, 'reported', true, {
      seconds: round(seconds, 2),
    });
  },

  async socket() {
    // Sync over the socket (docs/sync.md): the same work as push-batched and pull, as messages on
    // the workspace's WebSocket, answered by the object directly.
    let n = 0;
    const pushOver = async (socket, count, batch) => {
      for (let done = 0; done < count; done += batch) {
        // `echo: false`, as the SDK sends it: the pusher's poke carries none of its own changes.
        await socket.request({ type: 'push', id: `p${++n}`, echo: false, ops: Array.from({ length: Math.min(batch, count - done) }, () => op()) });
      }
    };
    for (const batch of [100, 1000]) {
      const u = await user();
      const socket = await openSocket(u);
      const t0 = now();
      await pushOver(socket, S.pushOps, batch);
      const rate = S.pushOps / ((now() - t0) / 1000);
      const bar = batch === 100 ? 0.6 : 0.9;
      row(
        `push-socket (${batch}-op messages)`,
        rate,
        'ops/s',
        'raw DO write',
        limits.rawWrite,
        rate / limits.rawWrite,
        `≥ ${bar}`,
        rate / limits.rawWrite >= bar,
      );
      socket.ws.close();
    }
    row(
      '  reference: raw write, durable every 100 ops',
      limits.rawWriteDurable,
      'ops/s',
      'raw DO write',
      limits.rawWrite,
      limits.rawWriteDurable / limits.rawWrite,
      'reported',
      true,
    );
    {
      const users = [];
      for (let i = 0; i < 8; i++) users.push(await user());
      const sockets = await Promise.all(users.map(openSocket));
      const t0 = now();
      await Promise.all(sockets.map((s) => pushOver(s, S.fanoutOps, 100)));
      const rate = (8 * S.fanoutOps) / ((now() - t0) / 1000);
      row('push-socket, 8 devices at once (8 workspaces)', rate, 'ops/s', 'raw DO write', limits.rawWrite, rate / limits.rawWrite, 'reported', true);
      for (const s of sockets) s.ws.close();
    }
    // Cold start streamed: every row of a workspace of S.pullLog rows, pages of 1000, window 4.
    const u = state.pullUser ?? (await user());
    if (!state.pullUser) await pushOps(u, S.pullLog, 100, progress('pull-socket rows', S.pullLog));
    let rows = 0;
    const measured = await againstBare('socket', async () => {
      const socket = await openSocket(u);
      const t0 = now();
      rows = 0;
      await new Promise((resolve, reject) => {
        socket.setOnAny((msg) => {
          if (msg.id !== 'cold') return;
          if (msg.type === 'error') return reject(new Error(msg.message));
          rows += msg.changes.length;
          if (!msg.hasMore) return resolve();
          socket.ws.send(JSON.stringify({ type: 'ack', id: 'cold', cursor: msg.nextCursor }));
        });
        socket.ws.send(JSON.stringify({ type: 'pull', id: 'cold', cursor: 0, limit: 1000, window: 4 }));
      });
      const passRate = rows / ((now() - t0) / 1000);
      socket.ws.close();
      return passRate;
    });
    const { rate } = measured;
    row(
      `pull-socket (cold start, ${rows.toLocaleString()} rows streamed)`,
      rate,
      'rows/s',
      'raw DO scan',
      limits.rawScan,
      rate / limits.rawScan,
      '≥ 0.6',
      rate / limits.rawScan >= 0.6,
    );
    bareRows('pull-socket', measured, 'over a socket (window 4)');
    // Realtime over the socket: A pushes on its socket, B's poke carries the op.
    const a = await user();
    const b = await secondDevice(a);
    const [sa, sb] = [await openSocket(a), await openSocket({ ...b, workspaceId: a.workspaceId })];
    const rounds = [];
    for (let i = 0; i < S.realtimeRounds; i++) {
      const sent = op();
      const t = now();
      const poked = new Promise((resolve) =>
        sb.setOnAny((msg) => msg.type === 'poke' && msg.changes?.some((c) => c.stamp.opId === sent.stamp.opId) && resolve()),
      );
      await Promise.all([sa.request({ type: 'push', id: `rt${i}`, ops: [sent] }), poked]);
      rounds.push(now() - t);
    }
    row('realtime over the socket: push → poke carrying the op, p50', median(rounds), 'ms', null, null, null, 'reported', true, {
      p99: round(pct(rounds, 99), 1),
    });
    sa.ws.close();
    sb.ws.close();
    await scenarios['socket-frames']();
  },

  async 'socket-frames'() {
    // Refused large frames cost the serial object no parsing (docs/security.md): an owner's pull
    // p99 while bursts of 7 ~12 MB frames from a viewer are refused, against its quiet p99.
    const owner = await user();
    await pushOps(owner, 200);
    const viewer = await user();
    const { inviteToken } = await call('POST', `/api/workspaces/${owner.workspaceId}/invites`, owner.token, { role: 'viewer' });
    await call('POST', '/api/workspaces/invites/accept', viewer.token, { inviteToken });
    const viewerUrl = async () => {
      const { ticket } = await call('POST', '/api/sync/ws-ticket', viewer.token, { workspaceId: owner.workspaceId });
      const address = new URL('/api/sync/ws', url);
      address.protocol = 'ws:';
      address.searchParams.set('workspaceId', owner.workspaceId);
      address.searchParams.set('ticket', ticket);
      return address.href;
    };
    const pullOnce = async () => {
      const t = now();
      await call('POST', '/api/sync/pull', owner.token, { scope: { workspaceId: owner.workspaceId }, cursor: 0, limit: 100 });
      return now() - t;
    };
    const f = await pullDuringRefusedFrames({ pullOnce, viewerUrl, samples: quick ? 40 : 100 });
    const ratio = f.duringP99 / f.quietP99;
    row('socket: owner pull p99 during bursts of 7 refused ~12 MB viewer frames', f.duringP99, 'ms', 'quiet pull p99', f.quietP99, ratio, '≤ 2', ratio <= 2, {
      p50: round(f.duringP50, 1),
      bursts: f.bursts,
      closes: f.closes,
    });
  },

  async 'sign-in'() {
    // Sign-in timing (docs/security.md): wrong-password medians, 72 samples, by what the account holds.
    const signIn = async (email, password) => {
      ipCounter = (ipCounter % 250) + 1;
      const res = await app.fetch(new URL('/api/basic-auth/sign-in', url), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': `10.78.${Math.floor(Math.random() * 250)}.${ipCounter}` },
        body: JSON.stringify({ email, password }),
      });
      await res.text();
      return res.status;
    };
    const m = await signInTiming({ signIn, db: appEnv.DB });
    const medians = Object.values(m).map((v) => v.median);
    const spread = Math.max(...medians) - Math.min(...medians);
    row('sign-in: wrong-password median, unknown email', m.unknown.median, 'ms', null, null, null, 'reported', true, {
      min: round(m.unknown.min),
      max: round(m.unknown.max),
    });
    row('sign-in: wrong-password median, bcrypt cost 12', m['bcrypt cost 12'].median, 'ms', null, null, null, 'reported', true, {
      min: round(m['bcrypt cost 12'].min),
      max: round(m['bcrypt cost 12'].max),
    });
    row('sign-in: wrong-password median, bcrypt cost 14', m['bcrypt cost 14'].median, 'ms', null, null, null, 'reported', true, {
      min: round(m['bcrypt cost 14'].min),
      max: round(m['bcrypt cost 14'].max),
    });
    row('sign-in: spread of the three medians', spread, 'ms', null, null, null, '≤ 50 ms', spread <= 50);
  },

  async central() {
    await centralScenario({ root, quick, devVars: DEV_VARS, row, now, pct, median, round, op });
  },

  async growth() {
    // Per-op cost of push and pull at a small and a large log, next to raw SQLite's own growth.
    const measure = async (u, size) => {
      const t0 = now();
      await pushOps(u, S.growthProbe, 100);
      const pushMs = (now() - t0) / S.growthProbe;
      const t1 = now();
      let cursor = Math.max(0, size - S.growthProbe);
      let rows = 0;
      while (rows < S.growthProbe) {
        const page = await call('POST', '/api/sync/pull', u.token, { scope: { workspaceId: u.workspaceId }, cursor, limit: 1000 });
        rows += page.changes.length;
        cursor = page.nextCursor;
        if (!page.hasMore) break;
      }
      return { pushMs, pullMs: (now() - t1) / Math.max(1, rows) };
    };
    const small = await user();
    await pushOps(small, S.growthSmall, 100, progress('growth small log', S.growthSmall));
    const a = await measure(small, S.growthSmall);
    const large = await user();
    await pushOps(large, S.growthLarge, 100, progress('growth large log', S.growthLarge));
    const b = await measure(large, S.growthLarge);
    const rawName = `g-${crypto.randomUUID()}`;
    await benchEnv.RAW.getByName(rawName).write(S.growthSmall - S.growthProbe, PAYLOAD_BYTES);
    const rawSmall = await rawWriteRate(rawName, S.growthProbe);
    await benchEnv.RAW.getByName(rawName).write(S.growthLarge - S.growthSmall - S.growthProbe, PAYLOAD_BYTES);
    const rawLarge = await rawWriteRate(rawName, S.growthProbe);
    const rawGrowth = rawSmall / rawLarge;
    const pushGrowth = b.pushMs / a.pushMs;
    const pullGrowth = b.pullMs / a.pullMs;
    const label = `${S.growthLarge / 1000}k vs ${S.growthSmall / 1000}k log`;
    row(`growth: push cost (${label})`, pushGrowth, '×', 'raw write growth', rawGrowth, pushGrowth / rawGrowth, '≤ 1.2', pushGrowth / rawGrowth <= 1.2);
    row(`growth: pull cost (${label})`, pullGrowth, '×', null, null, null, '≤ 1.3', pullGrowth <= 1.3);
  },

  async realtime() {
    // Device A pushes; device B (another session) holds the socket and pulls when poked. B acts
    // on the poke at once, as a client does, without waiting for A's push response.
    const a = await user();
    const b = await secondDevice(a);
    const wsUrl = new URL('/api/sync/ws', url);
    wsUrl.protocol = 'ws:';
    const { ticket } = await call('POST', '/api/sync/ws-ticket', b.token, { workspaceId: b.workspaceId });
    wsUrl.searchParams.set('workspaceId', a.workspaceId);
    wsUrl.searchParams.set('ticket', ticket);
    const socket = new WebSocket(wsUrl);
    const pokes = [];
    let waiting = null;
    let hello;
    const greeted = new Promise((resolve) => (hello = resolve));
    socket.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'hello') hello();
      if (msg.type === 'poke') waiting?.(msg);
    };
    socket.onerror = (e) => log(`realtime: socket error ${e.message ?? ''}`);
    await greeted; // sent once the object has confirmed the membership
    let cursor = 0;
    const carried = [];
    for (let i = 0; i < S.realtimeRounds; i++) {
      const poked = new Promise((resolve) => (waiting = resolve));
      const t0 = now();
      const sent = op();
      const pushed = call('POST', '/api/sync/push', a.token, { scope: { workspaceId: a.workspaceId }, ops: [sent] });
      const poke = await poked;
      // The SDK's path: a small commit's changes come with the poke, and B applies them from there.
      if (poke.changes?.some((c) => c.stamp.opId === sent.stamp.opId)) carried.push(now() - t0);
      const page = await call('POST', '/api/sync/pull', b.token, { scope: { workspaceId: b.workspaceId }, cursor, limit: 100 });
      pokes.push(now() - t0);
      await pushed;
      cursor = page.nextCursor;
      if (!page.changes.length) throw new Error('realtime: the pull after a poke was empty');
    }
    socket.close();
    const p50 = median(pokes);
    const p99 = pct(pokes, 99);
    row('realtime push → poke → pull, p50', p50, 'ms', null, null, null, '≤ 20 ms', p50 <= 20);
    row('realtime push → poke → pull, p99', p99, 'ms', null, null, null, '≤ 100 ms', p99 <= 100);
    if (carried.length !== S.realtimeRounds) throw new Error(`realtime: ${S.realtimeRounds - carried.length} pokes came without their change`);
    row('realtime push → poke carrying the op, p50', median(carried), 'ms', null, null, null, 'reported', true);
    row('realtime push → poke carrying the op, p99', pct(carried, 99), 'ms', null, null, null, 'reported', true);
  },

  async fanout() {
    const one = await user();
    const t0 = now();
    await pushOps(one, S.fanoutOps, 100);
    const single = S.fanoutOps / ((now() - t0) / 1000);
    const users = [];
    for (let i = 0; i < 8; i++) users.push(await user());
    const t1 = now();
    await Promise.all(users.map((u) => pushOps(u, S.fanoutOps, 100)));
    const total = (8 * S.fanoutOps) / ((now() - t1) / 1000);
    row('fan-out: 8 workspaces at once', total, 'ops/s', 'one workspace', single, total / single, '≥ 1.5', total / single >= 1.5);
  },

  async blob() {
    const u = await user();
    const size = S.blobMiB * 1024 * 1024;
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65_536)));
    const hash = `sha256:${Buffer.from(await crypto.subtle.digest('SHA-256', bytes)).toString('hex')}`;
    const presign = await call('POST', '/api/storage/presign-upload', u.token, {
      workspace_id: u.workspaceId,
      hash,
      mime_type: 'application/pdf',
      size_bytes: size,
    });
    const t0 = now();
    const res = await app.fetch(presign.url, { method: presign.method, headers: presign.headers, body: bytes });
    if (!res.ok) throw new Error(`blob upload: ${res.status} ${await res.text()}`);
    const mbps = S.blobMiB / ((now() - t0) / 1000);
    row(
      `blob upload ${S.blobMiB} MiB (signed URL, hash-checked)`,
      mbps,
      'MB/s',
      'raw R2 put',
      limits.r2PutMBps,
      mbps / limits.r2PutMBps,
      '≥ 0.5',
      mbps / limits.r2PutMBps >= 0.5,
    );
  },

  async snapshot() {
    const u =
      state.pullUser ??
      (await (async () => {
        const fresh = await user();
        await pushOps(fresh, S.pullLog, 100, progress('snapshot rows', S.pullLog));
        return fresh;
      })());
    let rows = 0;
    const measured = await againstBare('http', async () => {
      const t0 = now();
      rows = 0;
      let pageToken;
      do {
        const page = await call('POST', '/api/sync/snapshot', u.token, {
          scope: { workspaceId: u.workspaceId },
          pageSize: 1000,
          ...(pageToken ? { pageToken } : {}),
        });
        rows += page.items.length;
        pageToken = page.nextPageToken;
      } while (pageToken);
      return rows / ((now() - t0) / 1000);
    });
    const { rate } = measured;
    row(
      `snapshot bootstrap (${rows.toLocaleString()} rows)`,
      rate,
      'rows/s',
      'raw DO scan',
      limits.rawScan,
      rate / limits.rawScan,
      '≥ 0.5',
      rate / limits.rawScan >= 0.5,
    );
    bareRows('snapshot', measured, 'over HTTP');
  },

  async client() {
    // The SDK's own apply path (last-write-wins, revisions, cursor) into Dexie; IndexedDB here is
    // fake-indexeddb in Node, which is slower than a browser's.
    const { openDatabase } = await import(`${root}/client/dist/client/src/db.js`);
    const { HybridClock } = await import(`${root}/client/dist/client/src/hlc.js`);
    const { applyRemote } = await import(`${root}/client/dist/client/src/apply.js`);
    const { Emitter } = await import(`${root}/client/dist/client/src/events.js`);
    const clock = new HybridClock('bench-client');
    const db = openDatabase('bench', { clock, onCaptured: () => {} }, { indexedDB: new IDBFactory(), IDBKeyRange });
    const engine = { applyRemote: (changes, nextCursor) => applyRemote({ db, clock, events: new Emitter() }, changes, nextCursor) };
    const change = (v) => {
      const o = op(`c${v}`);
      return { serverVersion: v, tableName: 'messages', pk: o.pk, op: 'put', payload: o.payload, stamp: o.stamp };
    };
    const t0 = now();
    for (let v = 1; v <= S.clientRows; v += 1000) {
      await engine.applyRemote(
        Array.from({ length: Math.min(1000, S.clientRows - v + 1) }, (_, i) => change(v + i)),
        v + 999,
      );
    }
    const rate = S.clientRows / ((now() - t0) / 1000);
    const deltas = [];
    for (let i = 1; i <= S.deltaRounds; i++) {
      const t = now();
      await engine.applyRemote([change(S.clientRows + i)], S.clientRows + i);
      deltas.push(now() - t);
    }
    row(`client apply ${S.clientRows.toLocaleString()} rows (fake-indexeddb)`, rate, 'rows/s', null, null, null, 'reported', true);
    row(`client apply a 1-row delta into ${S.clientRows.toLocaleString()} rows`, median(deltas), 'ms', null, null, null, '≤ 10 ms', median(deltas) <= 10);
    db.close();
  },

  async webhooks() {
    if (noConsumer) {
      // The push path alone: many ops are cheap here, nothing is delivered.
      await webhooksScenario({ user, call, pushOps, row, log, now, pct, median, ops: S.pushOps, delivering: false });
      return;
    }
    await webhooksScenario({ user, call, pushOps, row, log, now, pct, median, ops: S.webhookOps, delivering: true });
    // The bar (push throughput with 3 hooks ≥ 0.9 × none) is the push path's: in production the
    // consumer runs elsewhere, here it would share the 2 cores with the pushes it is timed
    // against. So the same scenario runs again in a child bench whose app has no consumer
    // (docs/performance.md "Webhooks"), while this one is idle.
    log('  the push path alone (a child run without the Queue consumer):');
    const out = `${root}/.bench-webhooks-rows.json`;
    try {
      execFileSync(
        process.execPath,
        [fileURLToPath(import.meta.url), '--scenario', 'webhooks', '--webhooks-no-consumer', '--rows-out', out, ...(quick ? ['--quick'] : [])],
        {
          cwd: root,
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      );
      results.push(...JSON.parse(readFileSync(out, 'utf8')));
    } finally {
      rmSync(out, { force: true });
    }
  },

  async compression() {
    await compressionScenario({ user, call, url, op, row, log, now, median, pullRows: S.compressionRows, pushOps });
  },

  async bundle() {
    execFileSync('npx', ['wrangler', 'deploy', '--dry-run', '--outdir', `${root}/dist`], { cwd: root, stdio: 'ignore' });
    const kib = gzipSync(readFileSync(`${root}/dist/index.js`)).byteLength / 1024;
    row('Worker bundle (gzipped)', kib, 'KiB', null, null, null, '≤ 250', kib <= 250);
  },
};

const state = {};

// -- run -----------------------------------------------------------------------------------

const started = now();
try {
  await measureLimits();
  for (const [name, run] of Object.entries(scenarios)) {
    if (!want(name)) continue;
    if (name === 'socket-frames' && !only.includes(name)) continue; // part of `socket`; alone on request
    log(`${name}:`);
    const t = now();
    await run();
    log(`  (${round((now() - t) / 1000, 1)} s)`);
  }
} finally {
  await server.close();
}

if (rowsOut) {
  writeFileSync(rowsOut, JSON.stringify(results));
  process.exit(0);
}

const table = [
  ['scenario', 'figure', 'limit', 'ratio', 'bar', 'result'],
  ...results.map((r) => [
    r.scenario,
    `${r.figure.toLocaleString()} ${r.unit}`,
    r.limit === null ? '—' : `${r.limit.toLocaleString()} (${r.limitName})`,
    r.ratio === null ? '—' : String(r.ratio),
    r.bar,
    r.pass ? 'pass' : 'short',
  ]),
];
const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(line(table[0]));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of table.slice(1)) console.log(line(r));

const machine = { cpus: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), memoryGiB: round(totalmem() / 2 ** 30, 1), node: process.version };
writeFileSync(
  `${root}/bench/results.json`,
  JSON.stringify({ date: new Date().toISOString(), quick, machine, sizes: S, limits, results, seconds: round((now() - started) / 1000, 1) }, null, 2) + '\n',
);
log(`bench: done in ${round((now() - started) / 1000, 1)} s; wrote bench/results.json`);
