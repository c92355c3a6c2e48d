/**
 * Every OR3 Chat generation, with its own request shape (docs/api.md "OR3 generations"), syncs,
 * uploads and downloads: pull, snapshot, push, presign-upload, commit and presign-download answer
 * 200, never 400. The shapes are read from OR3's sources: Feb (before capabilities), 96dab6eb
 * (fileKindCapability, the cloud-intent header, the newer outbox fields), 5aa07eed (adds
 * workspaceItemCapability), and the newest (36e9a438/7bf010a8: upload intents, storage_id and
 * mime_type on downloads).
 */
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { fetchUrl, put, sha256, bytesOf } from '../storage/helpers';
import { hlc, message, syncUser, thread, type SyncUser } from './helpers';

interface Generation {
  name: string;
  /** Extra envelope fields on pull, snapshot and push. */
  sync: Record<string, unknown>;
  /** Extra headers on every call. */
  headers: Record<string, string>;
  /** Extra fields of each queued op (the outbox's own). */
  queue: () => Record<string, unknown>;
  /** Extra storage fields. */
  storage: Record<string, unknown>;
  /** Commits name the upload intent. */
  intents: boolean;
  /** Downloads send storage_id and mime_type. */
  downloadExtras: boolean;
}

const now = () => Math.floor(Date.now() / 1000);
const cloudIntent = { 'x-or3-cloud-intent': 'mutation' };
const newerQueue = () => ({ id: crypto.randomUUID(), createdAt: Date.now(), attempts: 0, nextAttemptAt: 0, readyAt: 0, status: 'in_flight' });

export const GENERATIONS: Generation[] = [
  {
    name: 'Feb',
    sync: {},
    headers: {},
    queue: () => ({ id: crypto.randomUUID(), createdAt: Date.now(), attempts: 0, status: 'pending' }),
    storage: {},
    intents: false,
    downloadExtras: false,
  },
  {
    name: '96dab6eb',
    sync: { fileKindCapability: 'v1' },
    headers: cloudIntent,
    queue: newerQueue,
    storage: { file_kind_capability: 'v1' },
    intents: false,
    downloadExtras: false,
  },
  {
    name: '5aa07eed',
    sync: { fileKindCapability: 'v1', workspaceItemCapability: 'v1' },
    headers: cloudIntent,
    queue: newerQueue,
    storage: { file_kind_capability: 'v1' },
    intents: false,
    downloadExtras: false,
  },
  {
    name: 'newest',
    sync: { workspaceItemCapability: 'v1', fileKindCapability: 'v1' },
    headers: cloudIntent,
    queue: () => ({ ...newerQueue(), lastError: 'timeout', lastErrorCode: 'NETWORK_ERROR' }),
    storage: { file_kind_capability: 'v1' },
    intents: true,
    downloadExtras: true,
  },
];

const request = (g: Generation, u: SyncUser, path: string, body: unknown) => call('POST', path, { ...u.headers, ...g.headers }, body);

function queued(g: Generation, tableName: string, pk: string, payload: Record<string, unknown>) {
  return { ...g.queue(), tableName, operation: 'put', pk, payload, stamp: { deviceId: `dev-${g.name}`, opId: crypto.randomUUID(), hlc: hlc(), clock: 1 } };
}

describe.each(GENERATIONS)('OR3 generation $name', (g) => {
  it('pushes, pulls and bootstraps from a snapshot with its own request shape', async () => {
    const u = await syncUser();
    const scope = { workspaceId: u.workspaceId };
    const ops = [
      queued(g, 'threads', 't1', thread('t1', { branch_mode: 'reference', root_thread_id: 't0', fork_reason: 'manual', summary_message_id: null })),
      queued(g, 'messages', 'm1', message('m1')),
    ];
    const pushed = await request(g, u, '/api/sync/push', { scope, ops, ...g.sync });
    expect(pushed.status, await pushed.clone().text()).toBe(200);
    const results = (await pushed.json<any>()).results;
    expect(results.map((r: any) => r.success)).toEqual([true, true]);

    const pulled = await request(g, u, '/api/sync/pull', { scope, cursor: 0, limit: 100, tables: ['threads', 'messages'], ...g.sync });
    expect(pulled.status, await pulled.clone().text()).toBe(200);
    const page = await pulled.json<any>();
    expect(page.changes.map((c: any) => c.pk)).toEqual(['t1', 'm1']);
    // The newest ThreadPayloadSchema fields round-trip.
    expect(page.changes[0].payload).toMatchObject({ branch_mode: 'reference', root_thread_id: 't0', fork_reason: 'manual', summary_message_id: null });

    const snap = await request(g, u, '/api/sync/snapshot', { scope, pageSize: 100, ...g.sync });
    expect(snap.status, await snap.clone().text()).toBe(200);
    const items = (await snap.json<any>()).items;
    expect(items).toHaveLength(2);
    // Snapshot revisions carry the winning opId.
    expect(items.map((i: any) => i.revision.opId).sort()).toEqual(ops.map((o) => o.stamp.opId).sort());
  });

  it('uploads, commits and downloads an image with its own storage shape', async () => {
    const u = await syncUser();
    const bytes = bytesOf(`png bytes of ${g.name} ${crypto.randomUUID()}`);
    const hash = await sha256(bytes);
    const presigned = await request(g, u, '/api/storage/presign-upload', {
      workspace_id: u.workspaceId,
      hash,
      mime_type: 'image/png',
      size_bytes: bytes.byteLength,
      expires_in_ms: 60_000,
      disposition: 'inline',
      ...g.storage,
    });
    expect(presigned.status, await presigned.clone().text()).toBe(200);
    const upload = await presigned.json<any>();
    expect(upload.intentId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await put(upload.url, bytes, upload.headers)).status).toBe(200);
    const committed = await request(g, u, '/api/storage/commit', {
      workspace_id: u.workspaceId,
      hash,
      storage_id: upload.storageId,
      storage_provider_id: upload.storageProviderId,
      mime_type: 'image/png',
      size_bytes: bytes.byteLength,
      name: 'photo.png',
      kind: 'image',
      width: 1,
      height: 1,
      ...g.storage,
      ...(g.intents ? { intent_id: upload.intentId } : {}),
    });
    expect(committed.status, await committed.clone().text()).toBe(200);
    const file = {
      hash,
      name: 'photo.png',
      kind: 'image',
      mime_type: 'image/png',
      size_bytes: bytes.byteLength,
      storage_id: upload.storageId,
      deleted: false,
      created_at: now(),
      updated_at: now(),
      clock: 1,
    };
    const meta = await request(g, u, '/api/sync/push', { scope: { workspaceId: u.workspaceId }, ops: [queued(g, 'file_meta', hash, file)], ...g.sync });
    expect((await meta.json<any>()).results[0].success).toBe(true);
    const download = await request(g, u, '/api/storage/presign-download', {
      workspace_id: u.workspaceId,
      hash,
      expires_in_ms: 60_000,
      ...g.storage,
      ...(g.downloadExtras ? { storage_id: upload.storageId, mime_type: 'image/png' } : {}),
    });
    expect(download.status, await download.clone().text()).toBe(200);
    const got = await fetchUrl((await download.json<any>()).url);
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes);
  });
});

describe('capability fields', () => {
  it("take only 'v1': another value, or an unknown field, is still a 400", async () => {
    const u = await syncUser();
    const scope = { workspaceId: u.workspaceId };
    for (const body of [
      { scope, cursor: 0, fileKindCapability: 'v2' },
      { scope, cursor: 0, workspaceItemCapability: true },
      { scope, cursor: 0, fileKindCapability: 'v1'.repeat(10_000) },
      { scope, cursor: 0, someOtherCapability: 'v1' },
    ]) {
      const res = await call('POST', '/api/sync/pull', u.headers, body);
      expect(res.status).toBe(400);
      expect((await res.json<any>()).error).toBe('invalid_body');
    }
    const storage = await call('POST', '/api/storage/presign-upload', u.headers, {
      workspace_id: u.workspaceId,
      hash: await sha256(bytesOf('x')),
      mime_type: 'image/png',
      size_bytes: 1,
      file_kind_capability: 'v0',
    });
    expect(storage.status).toBe(400);
    const commit = await call('POST', '/api/storage/commit', u.headers, {
      workspace_id: u.workspaceId,
      hash: await sha256(bytesOf('x')),
      storage_id: 'x',
      storage_provider_id: 'r2',
      mime_type: 'image/png',
      size_bytes: 1,
      name: 'x',
      kind: 'image',
      intent_id: 'not-a-uuid',
    });
    expect(commit.status).toBe(400);
    for (const extra of [{ mime_type: 'not a mime type' }, { mime_type: 'a/b'.repeat(200) }, { storage_id: 'x'.repeat(401) }, { file_kind_capability: 1 }]) {
      const download = await call('POST', '/api/storage/presign-download', u.headers, {
        workspace_id: u.workspaceId,
        hash: await sha256(bytesOf('x')),
        ...extra,
      });
      expect(download.status).toBe(400);
    }
  });

  it('a thread with a branch_mode or fork_reason OR3 does not know is a 400 Invalid payload, storing nothing', async () => {
    const u = await syncUser();
    const scope = { workspaceId: u.workspaceId };
    for (const extra of [{ branch_mode: 'sideways' }, { fork_reason: 'boredom' }, { root_thread_id: 7 }]) {
      const o = queued(GENERATIONS[3]!, 'threads', 't1', thread('t1', extra));
      const res = await call('POST', '/api/sync/push', u.headers, { scope, ops: [o] });
      expect(res.status).toBe(400);
      expect((await res.json<any>()).message).toMatch(/^Invalid payload for threads/);
    }
    const page = await (await call('POST', '/api/sync/pull', u.headers, { scope, cursor: 0 })).json<any>();
    expect(page.changes).toEqual([]);
  });

  it('the session reports appAccessAllowed and the workspace-item capability', async () => {
    const u = await syncUser();
    const body = await (await call('GET', '/api/auth/session', u.headers)).json<any>();
    expect(body).toMatchObject({ appAccessAllowed: true, workspaceItemCapability: 'v1', session: { authenticated: true } });
  });
});
