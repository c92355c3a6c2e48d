#!/usr/bin/env node
/**
 * A CPU profile of the Worker and its Durable Objects under a push or pull load, through the
 * V8 inspector of `wrangler dev`, summarised as self time per function. How the figures in
 * docs/performance.md were explained.
 *
 *   npx wrangler dev --var ENVIRONMENT:development --var OR3_BASIC_AUTH_REGISTRATION:open \
 *     --var 'OR3_RATE_LIMIT_OVERRIDES_JSON:{"push":100000,"pull":100000}' \
 *     --ip 127.0.0.1 --port 8799 --inspector-port 9231
 *   npm run bench:profile -- push      # or: pull, pull-socket, push-socket
 *   npm run bench:profile -- push-hooks   # push to a workspace with 3 webhooks on every event
 *                                         # (add --var OR3_WEBHOOK_ALLOW_LOOPBACK:true to wrangler dev)
 *
 * Function names and lines refer to wrangler's dev bundle (.wrangler/tmp/dev-*\/index.js).
 */
import { createServer } from 'node:http';
import WebSocket from 'ws'; // Node's built-in WebSocket is refused by wrangler's inspector proxy

const base = process.env.BASE_URL ?? 'http://127.0.0.1:8799';
const inspector = process.env.INSPECTOR_URL ?? 'ws://127.0.0.1:9231/ws';
const mode = process.argv[2] ?? 'push';
const REQUESTS = 60;

const socket = new WebSocket(inspector);
await new Promise((resolve, reject) => (socket.on('open', resolve), socket.on('error', reject)));
let nextId = 0;
const pending = new Map();
socket.on('message', (data) => {
  const msg = JSON.parse(String(data));
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
  });

async function call(method, path, token, body, headers = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const email = `profile-${crypto.randomUUID().slice(0, 8)}@example.com`;
const password = 'correct horse battery staple';
await call('POST', '/api/basic-auth/register', null, { email, password, confirmPassword: password });
const { accessToken } = await call('POST', '/api/basic-auth/sign-in', null, { email, password }, { 'x-or3-token-transport': 'bearer' });
const { session } = await call('GET', '/api/auth/session', accessToken);
const scope = { workspaceId: session.workspace.id };
if (mode === 'push-hooks') {
  // A receiver that answers 200 at once, and 3 hooks on every event pointing at it.
  const receiver = createServer((req, res) => req.resume().on('end', () => res.end('ok')));
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiver.unref();
  for (let i = 0; i < 3; i++) {
    await call('POST', `/api/workspaces/${scope.workspaceId}/webhooks`, accessToken, {
      url: `http://127.0.0.1:${receiver.address().port}/h${i}`,
      events: ['*'],
    });
  }
}

let seq = 0;
const op = () => {
  const pk = `m${++seq}`;
  return {
    tableName: 'messages',
    operation: 'put',
    pk,
    payload: {
      id: pk,
      thread_id: 't1',
      role: 'user',
      index: seq,
      order_key: 'a',
      deleted: false,
      created_at: 1,
      updated_at: 1,
      clock: 1,
      data: 'x'.repeat(130),
    },
    stamp: {
      deviceId: 'profile',
      opId: crypto.randomUUID(),
      hlc: `${String(Date.now()).padStart(15, '0')}:${String(seq % 999_999).padStart(6, '0')}:profile`,
      clock: 1,
    },
  };
};
const push = () => call('POST', '/api/sync/push', accessToken, { scope, ops: Array.from({ length: 100 }, op) });
for (let i = 0; i < (mode === 'pull-socket' ? 300 : 30); i++) await push(); // warm up, and a log to pull from

await send('Profiler.enable');
await send('Profiler.setSamplingInterval', { interval: 100 });
await send('Profiler.start');
const t0 = performance.now();
/** The workspace's socket, opened with a ticket (what the SDK holds). */
async function openSocket() {
  const { ticket } = await call('POST', '/api/sync/ws-ticket', accessToken, { workspaceId: scope.workspaceId });
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/sync/ws?workspaceId=${scope.workspaceId}&ticket=${ticket}`);
  await new Promise((resolve) => ws.once('open', resolve));
  return ws;
}

if (mode === 'pull-socket') {
  // A cold start streamed over the workspace's socket (window 4), the pull-socket scenario's shape.
  const ws = await openSocket();
  for (let i = 0; i < REQUESTS / 10; i++) {
    await new Promise((resolve) => {
      const onMessage = (data) => {
        const msg = JSON.parse(String(data));
        if (msg.id !== `cold${i}`) return;
        if (!msg.hasMore) return (ws.off('message', onMessage), resolve());
        ws.send(JSON.stringify({ type: 'ack', id: `cold${i}`, cursor: msg.nextCursor }));
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ type: 'pull', id: `cold${i}`, cursor: 0, limit: 1000, window: 4 }));
    });
  }
  ws.close();
} else if (mode === 'push-socket') {
  // 100-op pushes on the workspace's socket, one at a time, as the SDK sends them (`echo: false`).
  const ws = await openSocket();
  for (let i = 0; i < REQUESTS * 3; i++) {
    await new Promise((resolve) => {
      const onMessage = (data) => {
        if (JSON.parse(String(data)).id !== `p${i}`) return;
        ws.off('message', onMessage);
        resolve();
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ type: 'push', id: `p${i}`, echo: false, ops: Array.from({ length: 100 }, op) }));
    });
  }
  ws.close();
} else {
  for (let i = 0; i < REQUESTS; i++) {
    if (mode === 'push' || mode === 'push-hooks') await push();
    else await call('POST', '/api/sync/pull', accessToken, { scope, cursor: 0, limit: 1000 });
  }
}
const wall = performance.now() - t0;
const { result } = await send('Profiler.stop');
socket.close();

const nodes = new Map(result.profile.nodes.map((n) => [n.id, n]));
const selfTime = new Map();
let total = 0;
result.profile.samples.forEach((nodeId, i) => {
  const frame = nodes.get(nodeId).callFrame;
  const key = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`;
  const us = result.profile.timeDeltas[i] ?? 0;
  selfTime.set(key, (selfTime.get(key) ?? 0) + us);
  total += us;
});
console.log(`${mode}: ${REQUESTS} requests in ${wall.toFixed(0)} ms (${(wall / REQUESTS).toFixed(1)} ms each, profiler on); self time:`);
for (const [key, us] of [...selfTime].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${((us / total) * 100).toFixed(1).padStart(5)}% ${(us / 1000).toFixed(1).padStart(7)} ms  ${key}`);
}
