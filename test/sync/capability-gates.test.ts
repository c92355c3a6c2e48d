/**
 * The capability gates (docs/api.md "Capabilities"): clients that do not declare a capability are
 * refused with OR3's 426 — writers of such rows (incoming and stored) before anything is
 * allocated, readers of a workspace that holds them — and the storage routes refuse generic files
 * to clients without file_kind_capability.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { READER_GATE } from '../../src/workspace-db/reads';
import migrations from '../../migrations/do/migrations.js';
import { call } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { bytesOf, put, sha256 } from '../storage/helpers';
import { op, syncUser, type SyncUser } from './helpers';

const now = () => Math.floor(Date.now() / 1000);
const ALL = { fileKindCapability: 'v1', workspaceItemCapability: 'v1' };
const FILES_ONLY = { fileKindCapability: 'v1' };

const post = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  title: 'Notes',
  content: '',
  post_type: 'doc',
  deleted: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
  ...extra,
});
const project = (id: string, data: unknown) => ({ id, name: 'P', deleted: false, created_at: now(), updated_at: now(), clock: 1, data });
const genericFile = (hash: string) => ({
  hash,
  name: 'notes.txt',
  kind: 'file',
  mime_type: 'text/plain',
  size_bytes: 3,
  deleted: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
});

const sync = (u: SyncUser, path: string, body: Record<string, unknown>, caps: Record<string, unknown> = {}) =>
  call('POST', `/api/sync/${path}`, u.headers, { scope: { workspaceId: u.workspaceId }, ...body, ...caps });

async function expect426(res: Response, code: string) {
  expect(res.status).toBe(426);
  expect(await res.json()).toMatchObject({ error: code, code, requiredCapability: 'v1', message: expect.stringMatching(/^Update OR3 Chat/) });
}

async function head(u: SyncUser) {
  const page = await (await sync(u, 'pull', { cursor: 0, limit: 1000 }, ALL)).json<any>();
  return { count: page.changes.length, cursor: page.nextCursor };
}

describe('writers without a capability', () => {
  it('a generic file_meta (kind file) from a client without fileKindCapability is 426, nothing stored', async () => {
    const u = await syncUser();
    const hash = await sha256(bytesOf('abc'));
    await expect426(await sync(u, 'push', { ops: [op('file_meta', hash, genericFile(hash))] }), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    expect(await head(u)).toEqual({ count: 0, cursor: 0 });
    // With the capability it is stored.
    expect((await sync(u, 'push', { ops: [op('file_meta', hash, genericFile(hash))] }, FILES_ONLY)).status).toBe(200);
  });

  it.each([
    ['a file catalog post', 'posts', post('p1', { post_type: 'or3:file' })],
    ['a post with workspace-item meta', 'posts', post('p1', { meta: JSON.stringify({ 'or3.workspace-item': { version: 1, trashed_at: null } }) })],
    ['a post with workspace-item meta as entries', 'posts', post('p1', { meta: [{ key: 'or3.workspace-item', value: { version: 1, trashed_at: 5 } }] })],
    ['a post with malformed workspace-item meta', 'posts', post('p1', { meta: { 'or3.workspace-item': 'garbage' } })],
    ['a project holding files', 'projects', project('p1', JSON.stringify([{ id: 'f', kind: 'file' }]))],
  ])('%s from a client without workspaceItemCapability is 426, before any version is allocated', async (_what, table, payload) => {
    const u = await syncUser();
    for (const caps of [{}, FILES_ONLY]) {
      await expect426(
        await sync(u, 'push', { ops: [op('threads', 't1', undefined, { operation: 'delete' }), op(table, 'p1', payload)] }, caps),
        'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED',
      );
    }
    expect(await head(u)).toEqual({ count: 0, cursor: 0 });
    expect((await sync(u, 'push', { ops: [op(table, 'p1', payload)] }, ALL)).status).toBe(200);
  });

  it('a stored workspace item cannot be overwritten or deleted by a client without the capability, even when its write omits the fields', async () => {
    const u = await syncUser();
    await sync(u, 'push', { ops: [op('posts', 'p1', post('p1', { post_type: 'or3:file' }))] }, ALL);
    const before = await head(u);
    await expect426(await sync(u, 'push', { ops: [op('posts', 'p1', post('p1'), { clock: 5 })] }), 'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED');
    await expect426(
      await sync(u, 'push', { ops: [op('posts', 'p1', undefined, { operation: 'delete', clock: 5 })] }, FILES_ONLY),
      'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED',
    );
    expect(await head(u)).toEqual(before);
    // A stored generic file likewise, for a client without fileKindCapability.
    const hash = await sha256(bytesOf('abc'));
    await sync(u, 'push', { ops: [op('file_meta', hash, genericFile(hash))] }, ALL);
    const withFile = await head(u);
    await expect426(
      await sync(u, 'push', { ops: [op('file_meta', hash, { ...genericFile(hash), kind: 'image' }, { clock: 9 })] }),
      'OR3_FILE_KIND_UPDATE_REQUIRED',
    );
    expect(await head(u)).toEqual(withFile);
    // The capable client still may.
    expect((await sync(u, 'push', { ops: [op('posts', 'p1', post('p1'), { clock: 5 })] }, ALL)).status).toBe(200);
  });
});

describe('readers without a capability', () => {
  it('pull and snapshot answer 426 while the workspace holds such live rows, in the tables read; 200 again once they are gone', async () => {
    const u = await syncUser();
    await sync(u, 'push', {
      ops: [op('threads', 't1', { id: 't1', status: 'ready', deleted: false, pinned: false, created_at: now(), updated_at: now(), clock: 1 })],
    });
    await sync(u, 'push', { ops: [op('posts', 'p1', post('p1', { post_type: 'or3:file' }))] }, ALL);
    for (const caps of [{}, FILES_ONLY]) {
      await expect426(await sync(u, 'pull', { cursor: 0 }, caps), 'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED');
      await expect426(await sync(u, 'snapshot', { pageSize: 10 }, caps), 'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED');
      await expect426(await sync(u, 'snapshot', { pageSize: 10, tables: ['posts'] }, caps), 'OR3_WORKSPACE_ITEM_UPDATE_REQUIRED');
      // Tables that hold none are still served.
      expect((await sync(u, 'pull', { cursor: 0, tables: ['threads'] }, caps)).status).toBe(200);
    }
    expect((await sync(u, 'pull', { cursor: 0 }, ALL)).status).toBe(200);
    // Generic files gate readers without fileKindCapability.
    const hash = await sha256(bytesOf('abc'));
    await sync(u, 'push', { ops: [op('file_meta', hash, genericFile(hash))] }, ALL);
    await expect426(await sync(u, 'pull', { cursor: 0, tables: ['file_meta'] }, { workspaceItemCapability: 'v1' }), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    // Once the rows are deleted (tombstones), older readers are served again.
    await sync(
      u,
      'push',
      { ops: [op('posts', 'p1', undefined, { operation: 'delete', clock: 9 }), op('file_meta', hash, undefined, { operation: 'delete', clock: 9 })] },
      ALL,
    );
    expect((await sync(u, 'pull', { cursor: 0 })).status).toBe(200);
    expect((await sync(u, 'snapshot', { pageSize: 10 })).status).toBe(200);
  });
});

describe('storage without file_kind_capability', () => {
  const vars = { OR3_STORAGE_ALLOWED_MIME_TYPES: 'image/png,text/plain' } as Record<string, unknown>;
  const presign = (u: SyncUser, body: Record<string, unknown>, env: Record<string, unknown> = vars) =>
    apiWithEnv(env, '/api/storage/presign-upload', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ workspace_id: u.workspaceId, size_bytes: 3, ...body }),
    });

  it('presign-upload: an allowed generic MIME type is 426 without the capability; an unlisted one stays 415; any MIME only with the setting and the capability', async () => {
    const u = await syncUser();
    const hash = await sha256(bytesOf('abc'));
    await expect426(await presign(u, { hash, mime_type: 'text/plain' }), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    expect((await presign(u, { hash, mime_type: 'text/plain', file_kind_capability: 'v1' })).status).toBe(200);
    expect((await presign(u, { hash, mime_type: 'application/zip' })).status).toBe(415);
    expect((await presign(u, { hash, mime_type: 'application/zip', file_kind_capability: 'v1' })).status).toBe(415);
    const any = { ...vars, OR3_STORAGE_ALLOW_ANY_FILE_TYPE: 'true' };
    await expect426(await presign(u, { hash, mime_type: 'application/zip' }, any), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    const zip = await presign(u, { hash, mime_type: 'application/zip', file_kind_capability: 'v1' }, any);
    expect(zip.status).toBe(200);
    // …and its commit passes the MIME policy the same way.
    const up = await zip.json<any>();
    expect((await put(up.url, bytesOf('abc'), up.headers)).status).toBe(200);
    const body = {
      workspace_id: u.workspaceId,
      hash,
      storage_id: up.storageId,
      storage_provider_id: 'r2',
      mime_type: 'application/zip',
      size_bytes: 3,
      name: 'a.zip',
      kind: 'file',
      file_kind_capability: 'v1',
      intent_id: up.intentId,
    };
    const commitWith = (env: Record<string, unknown>) =>
      apiWithEnv(env, '/api/storage/commit', { method: 'POST', headers: { ...u.headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await commitWith(vars)).status).toBe(415);
    expect((await commitWith(any)).status).toBe(200);
  });

  it('commit of a generic file without the capability is 426 and records nothing; presign-download of one is 426, and with it an inert attachment', async () => {
    const u = await syncUser();
    const bytes = bytesOf('abc');
    const hash = await sha256(bytes);
    const up = await (await presign(u, { hash, mime_type: 'text/plain', file_kind_capability: 'v1' })).json<any>();
    expect((await put(up.url, bytes, up.headers)).status).toBe(200);
    const commit = (extra: Record<string, unknown>) =>
      apiWithEnv(vars, '/api/storage/commit', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          workspace_id: u.workspaceId,
          hash,
          storage_id: up.storageId,
          storage_provider_id: 'r2',
          mime_type: 'text/plain',
          size_bytes: 3,
          name: 'notes.txt',
          kind: 'file',
          ...extra,
        }),
      });
    await expect426(await commit({}), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
    expect(usage.blob_count).toBe(0);
    expect((await commit({ file_kind_capability: 'v1', intent_id: up.intentId })).status).toBe(200);
    const download = (extra: Record<string, unknown>) =>
      call('POST', '/api/storage/presign-download', u.headers, { workspace_id: u.workspaceId, hash, ...extra });
    await expect426(await download({}), 'OR3_FILE_KIND_UPDATE_REQUIRED');
    const ok = await download({ file_kind_capability: 'v1', disposition: 'inline' });
    expect(ok.status).toBe(200);
    expect((await ok.json<any>()).disposition).toBe('attachment');
  });
});

describe('cost', () => {
  it("the readers' gate is one lookup on the partial index rows_flags_idx, with or without a tables filter", async () => {
    const u = await syncUser();
    await sync(u, 'push', { ops: [op('posts', 'p1', post('p1', { post_type: 'or3:file' }))] }, ALL);
    const plans = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_o, state) =>
      [`${READER_GATE} LIMIT 1`, `${READER_GATE} AND table_name IN (?, ?) LIMIT 1`].map((q, i) =>
        state.storage.sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${q}`, 3, ...(i ? ['posts', 'projects'] : []))
          .toArray()
          .map((r) => r.detail)
          .join(' | '),
      ),
    );
    for (const plan of plans) expect(plan).toMatch(/USING (COVERING )?INDEX rows_flags_idx/);
  });
});

describe('migration 0005', () => {
  it('classifies the rows stored before it by the same rules as a push', async () => {
    const u = await syncUser();
    const hash = await sha256(bytesOf('abc'));
    const rows = [
      op('file_meta', hash, genericFile(hash)),
      op('posts', 'catalog', post('catalog', { post_type: 'or3:file' })),
      op('posts', 'meta-text', post('meta-text', { meta: JSON.stringify({ 'or3.workspace-item': { version: 1, trashed_at: null } }) })),
      op('posts', 'meta-entries', post('meta-entries', { meta: [{ key: 'or3.workspace-item', value: null }] })),
      op('projects', 'files-text', project('files-text', JSON.stringify([{ kind: 'file', id: 'f' }]))),
      op('projects', 'files-array', project('files-array', [{ kind: 'chat' }, { kind: 'file' }])),
      op('posts', 'plain', post('plain', { meta: JSON.stringify({ other: 1 }) })),
      op('projects', 'plain-project', project('plain-project', JSON.stringify([{ kind: 'chat' }]))),
    ];
    expect((await sync(u, 'push', { ops: rows }, ALL)).status).toBe(200);
    const flags = await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_o, state) => {
      const sql = state.storage.sql;
      const read = () =>
        Object.fromEntries(
          sql
            .exec<{ pk: string; flags: number }>('SELECT pk, flags FROM rows ORDER BY pk')
            .toArray()
            .map((r) => [r.pk, r.flags]),
        );
      const pushed = read();
      sql.exec('UPDATE rows SET flags = 0');
      const m0005 = (migrations.migrations as Record<string, string>).m0005!;
      for (const statement of m0005.split('--> statement-breakpoint').filter((q) => /^\s*UPDATE/m.test(q) && !/^\s*(CREATE|ALTER)/m.test(q)))
        sql.exec(statement);
      return { pushed, migrated: read() };
    });
    expect(flags.migrated).toEqual(flags.pushed);
    expect(flags.pushed).toEqual({ [hash]: 1, catalog: 2, 'meta-text': 2, 'meta-entries': 2, 'files-text': 2, 'files-array': 2, plain: 0, 'plain-project': 0 });
  });
});
