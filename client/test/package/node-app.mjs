// A fresh Node app using the installed @or3-edge/client tarball (copied into a temporary app by
// client/test/package.test.ts): two devices of one user, a message across, realtime live.
// Prints one JSON line with what it saw. Node has no IndexedDB: fake-indexeddb stands in.
// With a fourth argument `ws`, the `ws` package is passed as the WebSocket option (Node 20);
// with `none`, nothing is passed and realtime is expected to be unavailable (a runtime without one).
import 'fake-indexeddb/auto';
import { createOr3Client, memoryTokenStore } from '@or3-edge/client';

const [baseUrl, email, password, socket = 'global'] = process.argv.slice(2);
const WebSocket = socket === 'ws' ? (await import('ws')).default : undefined;
const device = (name) => createOr3Client({ baseUrl, tokenStore: memoryTokenStore(), databasePrefix: `smoke-${name}`, ...(WebSocket ? { WebSocket } : {}) });
const until = async (check, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

const a = device('a');
await a.basicAuth.register({ email, password });
const wsA = await a.openWorkspace();
const now = Math.floor(Date.now() / 1000);
await wsA.db.messages.put({
  id: 'm1',
  thread_id: 't1',
  role: 'user',
  index: 0,
  order_key: 'a0',
  data: 'hello from node',
  deleted: false,
  created_at: now,
  updated_at: now,
});
await wsA.syncNow();
if (socket !== 'none') await until(() => wsA.status.realtime === 'live');

const b = device('b');
await b.basicAuth.signIn(email, password);
const wsB = await b.openWorkspace(wsA.id);
await wsB.syncNow();
const row = await wsB.db.messages.get('m1');
console.log(JSON.stringify({ message: row?.data ?? null, realtime: wsA.status.realtime, reason: wsA.status.realtimeReason, pending: wsA.status.pending }));
await a.close();
await b.close();
process.exit(0);
