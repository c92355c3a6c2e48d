/**
 * `npm run bench -- --scenario webhooks` (docs/performance.md "Webhooks"): push throughput of a
 * workspace with 3 webhooks subscribed to every event against one with none (the push path only
 * records the events in its transaction and hands them to the Queue after the commit), and the
 * delivery latency from commit to a real Node receiver through the local Queue.
 */
import { createServer } from 'node:http';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

/**
 * A Node receiver, on its own thread (in production the receiver is another machine; ~1,500
 * deliveries a second answered on the bench's event loop would slow the pushes it times). It
 * notes when each delivery arrived and the commit time its body states.
 */
async function receiver() {
  const latencies = [];
  const thread = new Worker(new URL(import.meta.url));
  const url = await new Promise((resolve, reject) => {
    thread.once('error', reject);
    thread.on('message', (m) => {
      if (m.url) resolve(m.url);
      else latencies.push(...m.latencies);
    });
  });
  return { url, latencies, close: () => thread.terminate() };
}

function receiverThread() {
  let pending = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      pending.push(Date.now() - Date.parse(body.timestamp));
      res.writeHead(200);
      res.end('ok');
    });
  });
  // Arrivals go to the bench in batches, so the bench's loop is not woken per delivery.
  setInterval(() => {
    if (pending.length === 0) return;
    parentPort.postMessage({ latencies: pending });
    pending = [];
  }, 50);
  server.listen(0, '127.0.0.1', () => parentPort.postMessage({ url: `http://127.0.0.1:${server.address().port}` }));
}

if (!isMainThread) receiverThread();

/** `delivering` false: the app runs without its Queue consumer (`--webhooks-no-consumer`), so only the push path's own cost is timed. */
export async function webhooksScenario({ user, call, pushOps, row, log, now, pct, median, ops, delivering = true }) {
  const rx = await receiver();
  try {
    const plain = await user();
    const hooked = await user();
    for (let i = 0; i < 3; i++) {
      await call('POST', `/api/workspaces/${hooked.workspaceId}/webhooks`, hooked.token, { url: `${rx.url}/hook-${i}`, events: ['*'] });
    }
    // Alternating rounds, so both see the same machine (other load, the consumer's own work).
    const rounds = 10;
    const per = Math.ceil(ops / rounds);
    let plainMs = 0;
    let hookedMs = 0;
    for (let r = 0; r < rounds; r++) {
      let t = now();
      await pushOps(plain, per, 100);
      plainMs += now() - t;
      t = now();
      await pushOps(hooked, per, 100);
      hookedMs += now() - t;
      log(`  round ${r + 1}/${rounds}: ${per} ops each`);
    }
    const plainRate = (per * rounds) / (plainMs / 1000);
    const hookedRate = (per * rounds) / (hookedMs / 1000);
    log(`  push: ${Math.round(plainRate)} ops/s without hooks, ${Math.round(hookedRate)} ops/s with 3 (${(hookedRate / plainRate).toFixed(2)}×)`);
    if (!delivering) {
      row('push, no webhooks (the push path alone)', plainRate, 'ops/s', null, null, null, 'reported', true);
      const ratio = hookedRate / plainRate;
      row(
        'push, 3 webhooks subscribed (the push path alone: enqueue, no consumer)',
        hookedRate,
        'ops/s',
        'push with none',
        plainRate,
        ratio,
        '≥ 0.9',
        ratio >= 0.9,
      );
      return;
    }
    const expected = per * rounds * 3;
    const until = Date.now() + (process.env.BENCH_WEBHOOK_WAIT_MS ? Number(process.env.BENCH_WEBHOOK_WAIT_MS) : 300_000);
    while (rx.latencies.length < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    log(`  delivered ${rx.latencies.length}/${expected}`);
    // Latency when the queue is not backed up: single writes, a few hundred ms apart.
    const burst = rx.latencies.splice(0);
    const singles = 30;
    for (let i = 0; i < singles; i++) {
      await pushOps(hooked, 1, 1);
      await new Promise((r) => setTimeout(r, 300));
    }
    const quietUntil = Date.now() + 30_000;
    while (rx.latencies.length < singles * 3 && Date.now() < quietUntil) await new Promise((r) => setTimeout(r, 100));
    const quiet = rx.latencies.splice(0);
    // With the consumer delivering on the same cores: what the whole box does, reported; the bar
    // is the push path's, measured without the consumer (run.mjs runs it after this).
    row('push, no webhooks (consumer delivering on the same cores)', plainRate, 'ops/s', null, null, null, 'reported', true);
    row(
      'push, 3 webhooks subscribed (consumer delivering on the same cores)',
      hookedRate,
      'ops/s',
      'push with none',
      plainRate,
      hookedRate / plainRate,
      'reported',
      true,
    );
    row(`delivery latency p50, one write at a time (${quiet.length} deliveries)`, median(quiet), 'ms', null, null, null, 'reported', true);
    row('delivery latency p99, one write at a time', pct(quiet, 99), 'ms', null, null, null, 'reported', quiet.length === singles * 3);
    row(`delivery latency p50, after a burst of ${burst.length.toLocaleString()} deliveries`, median(burst), 'ms', null, null, null, 'reported', true);
    row('delivery latency p99, after the burst', pct(burst, 99), 'ms', null, null, null, 'reported', burst.length === expected);
  } finally {
    await rx.close();
  }
}
