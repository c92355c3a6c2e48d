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

let hlcCounter = 0;
export const hlc = () => `${String(Date.now()).padStart(15, '0')}:${String(++hlcCounter).padStart(6, '0')}:dev`;

export function op(
  tableName: string,
  pk: string,
  payload: Record<string, unknown> | undefined,
  opts: { operation?: 'put' | 'delete'; clock?: number; hlc?: string; opId?: string; deviceId?: string } = {},
) {
  return {
    tableName,
    operation: opts.operation ?? 'put',
    pk,
    ...(payload ? { payload } : {}),
    stamp: { deviceId: opts.deviceId ?? 'device-a', opId: opts.opId ?? crypto.randomUUID(), hlc: opts.hlc ?? hlc(), clock: opts.clock ?? 1 },
  };
}

const now = () => Math.floor(Date.now() / 1000);

export const message = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  thread_id: 't1',
  role: 'user',
  index: 0,
  order_key: 'a0',
  deleted: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
  data: 'hello',
  ...extra,
});
export const thread = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  status: 'ready',
  deleted: false,
  pinned: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
  title: 'T',
  ...extra,
});

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
