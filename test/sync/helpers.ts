/** Helpers for sync tests: ops with stamps, and push/pull/snapshot calls through the Worker. */
import { call, signedInUser, type SignedIn } from '../auth/helpers';

export interface SyncUser extends SignedIn {
  workspaceId: string;
}

/** A signed-in user with their default workspace provisioned. */
export async function syncUser(): Promise<SyncUser> {
  const user = await signedInUser();
  const { session } = await (await call('GET', '/api/auth/session', user.headers)).json<any>();
  return { ...user, workspaceId: session.workspace.id };
}

// Row and op builders: pure, shared with the Node-side tests (tools/webhooks/test).
export { hlc, message, op, thread } from '../fixtures/rows';

export async function push(user: { headers: Record<string, string> }, workspaceId: string, ops: unknown[]) {
  return call('POST', '/api/sync/push', user.headers, { scope: { workspaceId }, ops });
}

export async function pushOk(user: { headers: Record<string, string> }, workspaceId: string, ops: unknown[]) {
  const res = await push(user, workspaceId, ops);
  if (res.status !== 200) throw new Error(`push failed ${res.status}: ${await res.text()}`);
  return res.json<{ results: { opId: string; success: boolean; serverVersion?: number; errorCode?: string }[]; serverVersion: number }>();
}

export async function pull(user: { headers: Record<string, string> }, workspaceId: string, cursor: number, extra: Record<string, unknown> = {}) {
  const res = await call('POST', '/api/sync/pull', user.headers, { scope: { workspaceId }, cursor, ...extra });
  if (res.status !== 200) throw new Error(`pull failed ${res.status}: ${await res.text()}`);
  return res.json<{ changes: any[]; nextCursor: number; hasMore: boolean; oldestRetainedVersion: number; requiresSnapshot: boolean }>();
}

/** Every page of a snapshot, checking that all pages agree on its id and watermark. */
export async function snapshotAll(user: { headers: Record<string, string> }, workspaceId: string, pageSize = 2) {
  const items: any[] = [];
  let pageToken: string | undefined;
  let first: { snapshotId: string; highWatermark: number } | undefined;
  for (;;) {
    const res = await call('POST', '/api/sync/snapshot', user.headers, { scope: { workspaceId }, pageSize, ...(pageToken ? { pageToken } : {}) });
    if (res.status !== 200) throw new Error(`snapshot failed ${res.status}: ${await res.text()}`);
    const page = await res.json<any>();
    first ??= { snapshotId: page.snapshotId, highWatermark: page.highWatermark };
    if (page.snapshotId !== first.snapshotId || page.highWatermark !== first.highWatermark) throw new Error('snapshot pages disagree');
    items.push(...page.items);
    if (!page.nextPageToken) break;
    pageToken = page.nextPageToken;
  }
  return { ...first!, items };
}

/** A WebSocket opened through the Worker, with every JSON message it received. */
export interface TestSocket {
  ws: WebSocket;
  messages: any[];
  closed: Promise<{ code: number }>;
  /** The first message (already received or still to come) that matches, within 5 s. */
  next: (predicate: (m: any) => boolean, what?: string) => Promise<any>;
  send: (message: unknown) => void;
}

export async function openSocket(res: Response): Promise<TestSocket> {
  if (!res.webSocket) throw new Error(`no upgrade: ${res.status} ${await res.text()}`);
  const ws = res.webSocket;
  ws.accept();
  const messages: any[] = [];
  const waiters: { predicate: (m: any) => boolean; resolve: (m: any) => void }[] = [];
  ws.addEventListener('message', (e) => {
    const text = String(e.data);
    const m = text === 'pong' ? { type: 'pong' } : JSON.parse(text);
    messages.push(m);
    for (const w of [...waiters]) if (w.predicate(m)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(m));
  });
  const closed = new Promise<{ code: number }>((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code })));
  const next = (predicate: (m: any) => boolean, what = 'a message') =>
    new Promise<any>((resolve, reject) => {
      const found = messages.find(predicate);
      if (found) return resolve(found);
      const waiter = { predicate, resolve };
      waiters.push(waiter);
      setTimeout(() => (waiters.splice(waiters.indexOf(waiter), 1), reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages)}`))), 5000);
    });
  const send = (message: unknown) => ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  return { ws, messages, closed, next, send };
}
