/**
 * Bench figures for the security checklist (docs/security.md): what a timing or a flood can tell
 * or cost, measured against the real Worker that bench/run.mjs starts. Reported, never asserted
 * in tests (timings are flaky on shared machines).
 */
import bcrypt from 'bcryptjs';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
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

/**
 * The viewer's thread: opens its socket, then sends bursts of refused ~12 MB push frames on request.
 *
 * It speaks WebSocket over a plain TCP socket with its 7 frames built and masked once: a client
 * library masks every frame it sends (84 MB of XOR per burst), and on this 2-core machine that
 * CPU would be taken from the server under test. A real flood's client CPU is the attacker's own.
 */
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
  const BURST = 7;
  const frames = Array.from({ length: BURST }, (_, i) => maskedTextFrame(`{"type":"push","id":"flood-${i + 1}","ops":${body}}`));
  let ws = null;
  let target = 0;
  let refused = 0;
  // Opens a socket; resolves once the server said hello.
  const open = (url) =>
    new Promise((resolve, reject) => {
      const socket = rawWebSocket(url, {
        text(data) {
          const msg = JSON.parse(data);
          if (msg.type === 'hello') resolve();
          else if (msg.type === 'error' && String(msg.id).startsWith('flood-') && ++refused === target) parentPort.postMessage({ refused });
        },
        close(code) {
          if (ws !== socket || refused >= target) return;
          // Closed for a refused large push (1008): this burst is over, whatever was still in flight.
          if (code === 1008) {
            refused = target;
            parentPort.postMessage({ refused, closed: code });
          } else parentPort.postMessage({ error: `socket closed ${code} after ${refused} refusals` });
        },
        error(err) {
          reject(err);
          parentPort.postMessage({ error: `socket error: ${err.message}` });
        },
      });
      ws = socket;
    });
  await open(viewerUrl);
  parentPort.postMessage({ frameBytes: body.length });
  parentPort.on('message', async ({ burst, url }) => {
    if (!ws.open) await open(url);
    target += burst;
    for (let i = 0; i < burst; i++) ws.write(frames[i % BURST]);
  });
}

/** A client text frame (RFC 6455 §5.2), masked with a random key, ready to write as it is. */
function maskedTextFrame(text) {
  const payload = Buffer.from(text, 'utf8');
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x81;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x81;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const key = randomBytes(4);
  for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
  return Buffer.concat([head, key, payload]);
}

/**
 * A minimal WebSocket client on a TCP socket: the upgrade, then the server's (unmasked, small,
 * unfragmented) frames: text messages, ping (answered), close (answered, then the socket ends).
 */
function rawWebSocket(address, on) {
  const url = new URL(address);
  const state = { open: false, sock: null };
  const req = httpRequest({
    host: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64') },
  });
  req.on('response', (res) => on.error(new Error(`upgrade refused: ${res.statusCode}`)));
  req.on('error', (err) => on.error(err));
  req.on('upgrade', (_res, sock, head) => {
    state.open = true;
    state.sock = sock;
    let buf = head;
    const control = (opcode, payload) => sock.write(Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), Buffer.alloc(4), payload]));
    // The upgrade's `head` may already hold the server's first frames (its hello).
    const drain = () => {
      for (;;) {
        if (buf.length < 2) return;
        const opcode = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + len) return;
        const payload = buf.subarray(at, at + len);
        buf = buf.subarray(at + len);
        if (opcode === 1) on.text(payload.toString('utf8'));
        else if (opcode === 9) control(0xa, payload);
        else if (opcode === 8) {
          const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          if (state.open) control(8, payload.subarray(0, 2));
          state.open = false;
          sock.end();
          on.close(code);
        }
      }
    };
    sock.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      drain();
    });
    drain();
    sock.on('error', () => {});
    sock.on('close', () => {
      if (!state.open) return;
      state.open = false;
      on.close(1006);
    });
  });
  req.end();
  return {
    get open() {
      return state.open;
    },
    write: (frame) => state.sock.write(frame),
  };
}

if (!isMainThread && workerData?.viewerUrl) viewerThread(workerData);
