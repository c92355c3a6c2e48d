// A fresh Vite app using the installed @or3-edge/client tarball (copied into a temporary app by
// client/test/package.test.ts as main.ts, built with Vite and opened in Chromium): register,
// write, sync, and report the outcome in the page.
import { createOr3Client } from '@or3-edge/client';

const params = new URLSearchParams(location.search);
const out = document.getElementById('out')!;
try {
  const client = createOr3Client({ baseUrl: params.get('server')! });
  await client.basicAuth.register({ email: params.get('email')!, password: 'correct horse battery staple' });
  const ws = await client.openWorkspace();
  const now = Math.floor(Date.now() / 1000);
  await ws.db.messages.put({
    id: 'v1',
    thread_id: 't1',
    role: 'user',
    index: 0,
    order_key: 'a0',
    data: 'hello from vite',
    deleted: false,
    created_at: now,
    updated_at: now,
  });
  await ws.syncNow();
  out.textContent = JSON.stringify({ phase: ws.status.phase, pending: ws.status.pending, hasSynced: ws.status.hasSynced });
} catch (err) {
  out.textContent = `error: ${err instanceof Error ? err.message : String(err)}`;
}
