/**
 * Bench figures for the security checklist (docs/security.md): what a timing or a flood can tell
 * or cost, measured against the real Worker that bench/run.mjs starts. Reported, never asserted
 * in tests (timings are flaky on shared machines).
 */
import bcrypt from 'bcryptjs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/**
 * Sign-in timing (checklist case 44), the outside probe's method: 72 wrong-password sign-ins,
 * interleaved, 24 each for an unknown email, an account holding an imported bcrypt cost-12 hash
 * (OR3's), and one holding cost 14 (refused at import since, but a deployment may hold one from
 * before). Every account is fresh (the per-account backoff never engages), every request comes
 * from its own address (the per-address limit never engages). Returns the medians in ms.
 */
export async function signInTiming({ signIn, db }) {
  const hashes = { 'bcrypt cost 12': bcrypt.hashSync('the real password', 12), 'bcrypt cost 14': bcrypt.hashSync('the real password', 14) };
  const account = async (hash) => {
    const email = `timing-${crypto.randomUUID().slice(0, 12)}@example.com`;
    const t = Date.now();
    await db
      .prepare('INSERT INTO users (id, email, password_hash, token_version, is_admin, created_at, updated_at) VALUES (?, ?, ?, 0, 0, ?, ?)')
      .bind(crypto.randomUUID(), email, hash, t, t)
      .run();
    return email;
  };
  const samples = { unknown: [], 'bcrypt cost 12': [], 'bcrypt cost 14': [] };
  for (let i = 0; i < 24; i++) {
    for (const kind of Object.keys(samples)) {
      const email = kind === 'unknown' ? `nobody-${crypto.randomUUID().slice(0, 12)}@example.com` : await account(hashes[kind]);
      const t = performance.now();
      const status = await signIn(email, 'a wrong password');
      samples[kind].push(performance.now() - t);
      if (status !== 401) throw new Error(`sign-in timing: expected 401, got ${status}`);
    }
  }
  const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { median: median(v), min: Math.min(...v), max: Math.max(...v) }]));
}

/**
 * An owner's pull latency while a viewer sends large push frames the workspace's object must
 * refuse (checklist case 48): p99 of quiet pulls against p99 of the pulls made while a burst of 7
 * frames of ~12 MB is in flight (from sending the first until the 7th refusal is back), over
 * several bursts. `pullOnce` times one owner pull; `viewerUrl()` gives a fresh address for the
 * viewer's socket (a ticket included): the object closes a socket whose large push it refused for
 * its role (1008), so each burst may need a new one, and ends when that close arrives.
 *
 * The viewer runs on its own thread: in production the flood comes from another machine, and
 * building and masking 84 MB per burst on the bench's own event loop would delay the owner's pull
 * responses on the client side and be counted against the server.
 */
export async function pullDuringRefusedFrames({ pullOnce, viewerUrl, samples = 100 }) {
  const firstUrl = await viewerUrl();
  const pct = (v, p) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
  const viewer = new Worker(new URL(import.meta.url), { workerData: { viewerUrl: firstUrl } });
  const events = [];
  let wake = null;
  viewer.on('message', (m) => {
    events.push(m);
    wake?.();
  });
  viewer.on('error', (err) => {
    events.push({ error: err.message });
    wake?.();
  });
  const next = async () => {
    while (events.length === 0) await new Promise((r) => (wake = r));
    const m = events.shift();
    if (m.error) throw new Error(`viewer thread: ${m.error}`);
    return m;
  };
  const { frameBytes } = await next(); // the viewer's socket is open
  let closes = 0;
  const quiet = [];
  const during = [];
  let bursts = 0;
  try {
    // Quiet and burst windows alternate, so a machine whose load drifts during the run weighs on
    // both figures alike.
    while ((during.length < samples || quiet.length < samples) && bursts < 200) {
      for (let i = 0; i < 5; i++) quiet.push(await pullOnce());
      bursts++;
      viewer.postMessage({ burst: 7, url: await viewerUrl() });
      let done = false;
      const burstDone = next()
        .then((m) => (closes += m.closed ? 1 : 0))
        .finally(() => (done = true));
      while (!done) during.push(await pullOnce());
      await burstDone; // throws if the viewer's thread failed
      await new Promise((r) => setTimeout(r, 100)); // a quiet gap between bursts
    }
  } finally {
    await viewer.terminate();
  }
  return { quietP99: pct(quiet, 99), duringP99: pct(during, 99), duringP50: pct(during, 50), bursts, frameBytes, closes };
}

/** The viewer's thread: opens its socket, then sends bursts of refused ~12 MB push frames on request. */
async function viewerThread({ viewerUrl }) {
  // ~12 MB: 48 ops with 250 KB payloads, as the SDK writes a push (its id first).
  const t = Math.floor(Date.now() / 1000);
  const ops = Array.from({ length: 48 }, (_, i) => ({
    tableName: 'messages',
    operation: 'put',
    pk: `flood-${i}`,
    payload: {
      id: `flood-${i}`,
      thread_id: 't',
      role: 'user',
      index: i,
      order_key: 'a',
      deleted: false,
      created_at: t,
      updated_at: t,
      clock: 1,
      data: 'z'.repeat(250_000),
    },
    stamp: { deviceId: 'flood', opId: crypto.randomUUID(), hlc: `${String(Date.now()).padStart(15, '0')}:000001:flood`, clock: 1 },
  }));
  const body = JSON.stringify(ops);
  let ws = null;
  let target = 0;
  let refused = 0;
  let sent = 0;
  // Opens a socket; resolves once the server said hello.
  const open = (url) =>
    new Promise((resolve) => {
      const socket = new WebSocket(url);
      ws = socket;
      socket.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === 'hello') resolve();
        else if (msg.type === 'error' && String(msg.id).startsWith('flood-') && ++refused === target) parentPort.postMessage({ refused });
      };
      socket.onerror = () => parentPort.postMessage({ error: 'socket error' });
      socket.onclose = (ev) => {
        if (ws !== socket || refused >= target) return;
        // Closed for a refused large push (1008): this burst is over, whatever was still in flight.
        if (ev.code === 1008) {
          refused = target;
          parentPort.postMessage({ refused, closed: ev.code });
        } else parentPort.postMessage({ error: `socket closed ${ev.code} after ${refused} refusals` });
      };
    });
  await open(viewerUrl);
  parentPort.postMessage({ frameBytes: body.length });
  parentPort.on('message', async ({ burst, url }) => {
    if (ws.readyState !== WebSocket.OPEN) await open(url);
    target += burst;
    for (let i = 0; i < burst; i++) ws.send(`{"type":"push","id":"flood-${++sent}","ops":${body}}`);
  });
}

if (!isMainThread && workerData?.viewerUrl) viewerThread(workerData);
