/**
 * Upload intents, storage delete and hardened generic-file downloads (docs/api.md "Upload
 * intents", "Storage delete", "Downloads"), against the real Worker, object and R2.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { call, signedInUser } from '../auth/helpers';
import { apiWithEnv } from '../helpers';
import { message, op, pushOk, syncUser, type SyncUser } from '../sync/helpers';
import { bytesOf, commit, downloadUrl, fetchUrl, intentStatus, presignUpload, put, sha256 } from './helpers';

const now = () => Math.floor(Date.now() / 1000);
const fileMeta = (hash: string, extra: Record<string, unknown> = {}) => ({
  hash,
  name: 'f.png',
  kind: 'image',
  mime_type: 'image/png',
  size_bytes: 3,
  deleted: false,
  created_at: now(),
  updated_at: now(),
  clock: 1,
  ...extra,
});
const FILES = { fileKindCapability: 'v1', workspaceItemCapability: 'v1' };

async function upload(u: SyncUser, bytes: Uint8Array, extra: Record<string, unknown> = {}) {
  const { res, hash, body } = await presignUpload(u, u.workspaceId, bytes, 'image/png', extra);
  expect(res.status).toBe(200);
  expect((await put(body.url, bytes, body.headers)).status).toBe(200);
  return { hash, body };
}

describe('upload intents', () => {
  it('a commit consumes its intent once: reuse, a wrong hash or size, and an unknown id are 409 and change nothing', async () => {
    const u = await syncUser();
    const bytes = bytesOf('intent bytes');
    const { hash, body } = await upload(u, bytes, { file_kind_capability: 'v1' });
    const other = await sha256(bytesOf('other'));
    expect((await commit(u, u.workspaceId, other, `ws/${u.workspaceId}/sha256/${other.slice(7)}`, 5, { intent_id: body.intentId })).status).toBe(404);
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength, { intent_id: crypto.randomUUID() })).status).toBe(409);
    expect(await intentStatus(u.workspaceId, body.intentId)).toBe('active');
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength, { intent_id: body.intentId })).status).toBe(200);
    expect(await intentStatus(u.workspaceId, body.intentId)).toBe('consumed');
    const reuse = await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength, { intent_id: body.intentId });
    expect(reuse.status).toBe(409);
    expect((await reuse.json<any>()).error).toBe('intent_invalid');
    // Another workspace's intent means nothing here: the same bytes, uploaded there, cannot be committed with it.
    const v = await syncUser();
    const theirs = await upload(v, bytesOf('intent bytes 2'));
    const mine = await upload(u, bytesOf('intent bytes 3'));
    const foreign = await commit(v, v.workspaceId, theirs.hash, theirs.body.storageId, 14, { intent_id: mine.body.intentId });
    expect(foreign.status).toBe(409);
    expect(await intentStatus(u.workspaceId, mine.body.intentId)).toBe('active');
    // Malformed or oversize ids are a 400.
    for (const intent_id of ['', 'x'.repeat(1000), 42]) {
      expect((await commit(v, v.workspaceId, theirs.hash, theirs.body.storageId, 14, { intent_id })).status).toBe(400);
    }
  });

  it("a newer client's file_meta for bytes never committed under its live intent is refused; after the commit it is accepted; the Feb client is not held", async () => {
    const u = await syncUser();
    const bytes = bytesOf('pending bytes');
    const { hash, body } = await upload(u, bytes, { file_kind_capability: 'v1' });
    const res = await call('POST', '/api/sync/push', u.headers, {
      scope: { workspaceId: u.workspaceId },
      ops: [op('file_meta', hash, fileMeta(hash))],
      ...FILES,
    });
    expect(res.status).toBe(200);
    const refused = (await res.json<any>()).results[0];
    expect(refused).toMatchObject({ success: false, errorCode: 'VALIDATION_ERROR' });
    const pulled = await (await call('POST', '/api/sync/pull', u.headers, { scope: { workspaceId: u.workspaceId }, cursor: 0, ...FILES })).json<any>();
    expect(pulled.changes).toEqual([]);
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength, { intent_id: body.intentId, file_kind_capability: 'v1' })).status).toBe(200);
    const after = await call('POST', '/api/sync/push', u.headers, {
      scope: { workspaceId: u.workspaceId },
      ops: [op('file_meta', hash, fileMeta(hash))],
      ...FILES,
    });
    expect((await after.json<any>()).results[0].success).toBe(true);
    // A client that predates intents (no capability on its presign or push) may push file_meta before its commit.
    const feb = bytesOf('feb bytes');
    const { hash: febHash } = await upload(u, feb);
    const febPush = await pushOk(u, u.workspaceId, [op('file_meta', febHash, fileMeta(febHash))]);
    expect(febPush.results[0]!.success).toBe(true);
  });
});

describe('POST /api/storage/delete', () => {
  it('409 while a live message or file_meta names the hash (decided from the rows, whatever ref_count a client sends); 200 once they are gone; an absent object is 200', async () => {
    const u = await syncUser();
    const bytes = bytesOf('deletable');
    const { hash, body } = await upload(u, bytes);
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength)).status).toBe(200);
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { file_hashes: JSON.stringify([hash]) })),
      op('file_meta', hash, fileMeta(hash, { ref_count: 0 })),
    ]);
    const del = (extra: Record<string, unknown> = {}) => call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash, ...extra });
    expect((await del()).status).toBe(409);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', undefined, { operation: 'delete', clock: 2 })]);
    const stillMeta = await del({ storage_id: body.storageId });
    expect(stillMeta.status).toBe(409);
    expect(await env.BLOBS.head(body.storageId)).not.toBeNull();
    await pushOk(u, u.workspaceId, [op('file_meta', hash, fileMeta(hash, { deleted: true }), { clock: 2 })]);
    expect((await del({ storage_id: body.storageId })).status).toBe(200);
    expect(await env.BLOBS.head(body.storageId)).toBeNull();
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
    expect(usage).toMatchObject({ used_bytes: 0, blob_count: 0 });
    // Absent: success.
    expect((await del()).status).toBe(200);
    expect((await call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash: await sha256(bytesOf('never')) })).status).toBe(200);
  });

  it('bad input is a 400, a foreign storage_id is a 400, a viewer or a stranger is a 403, and nothing is deleted', async () => {
    const u = await syncUser();
    const bytes = bytesOf('keep me');
    const { hash, body } = await upload(u, bytes);
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength)).status).toBe(200);
    const bad = [
      { workspace_id: u.workspaceId },
      { workspace_id: u.workspaceId, hash: '../../x' },
      { workspace_id: u.workspaceId, hash, storage_id: 'ws/other/sha256/' + hash.slice(7) },
      { workspace_id: u.workspaceId, hash, storage_id: 'x'.repeat(401) },
      { workspace_id: u.workspaceId, hash, extra: 1 },
    ];
    for (const b of bad) expect((await call('POST', '/api/storage/delete', u.headers, b)).status).toBe(400);
    const viewer = await signedInUser();
    await upsertMember(env, u.workspaceId, viewer.id, 'viewer');
    const stranger = await signedInUser();
    for (const who of [viewer, stranger])
      expect((await call('POST', '/api/storage/delete', who.headers, { workspace_id: u.workspaceId, hash })).status).toBe(403);
    expect(await env.BLOBS.head(body.storageId)).not.toBeNull();
  });
});

describe('generic-file downloads', () => {
  const vars = { OR3_STORAGE_ALLOWED_MIME_TYPES: 'image/png,text/html' } as Record<string, unknown>;

  async function genericFile(u: SyncUser, name: string) {
    const bytes = bytesOf('<script>alert(1)</script>');
    const hash = await sha256(bytes);
    const presigned = await apiWithEnv(vars, '/api/storage/presign-upload', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ workspace_id: u.workspaceId, hash, mime_type: 'text/html', size_bytes: bytes.byteLength, file_kind_capability: 'v1' }),
    });
    const up = await presigned.json<any>();
    expect((await put(up.url, bytes, up.headers)).status).toBe(200);
    const committed = await apiWithEnv(vars, '/api/storage/commit', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: JSON.stringify({
        workspace_id: u.workspaceId,
        hash,
        storage_id: up.storageId,
        storage_provider_id: 'r2',
        mime_type: 'text/html',
        size_bytes: bytes.byteLength,
        name,
        kind: 'file',
        file_kind_capability: 'v1',
        intent_id: up.intentId,
      }),
    });
    expect(committed.status).toBe(200);
    const meta = fileMeta(hash, { kind: 'file', mime_type: 'text/html', name, size_bytes: bytes.byteLength });
    const pushed = await call('POST', '/api/sync/push', u.headers, { scope: { workspaceId: u.workspaceId }, ops: [op('file_meta', hash, meta)], ...FILES });
    expect((await pushed.json<any>()).results[0].success).toBe(true);
    return { hash, bytes };
  }

  it('are inert attachments: octet-stream, sanitized filename, nosniff, private no-store', async () => {
    const u = await syncUser();
    const { hash, bytes } = await genericFile(u, '../../evil"\r\n<script>.html');
    const { res, body } = await downloadUrl(u, u.workspaceId, hash, { file_kind_capability: 'v1', disposition: 'inline' });
    expect(res.status).toBe(200);
    const got = await fetchUrl(body.url);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-type')).toBe('application/octet-stream');
    const disposition = got.headers.get('content-disposition')!;
    expect(disposition).toMatch(/^attachment; filename="/);
    expect(disposition).not.toMatch(/[\r\n]|\.\.\/|"<|evil"/);
    expect(got.headers.get('x-content-type-options')).toBe('nosniff');
    expect(got.headers.get('cache-control')).toBe('private, no-store');
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes);
    // The URL cannot be turned into an inline one: the flag is signed.
    expect((await fetchUrl(body.url.replace(/[?&]g=[^&]*/, ''))).status).toBe(403);
  });

  it('are re-authorized on every use: a removed member gets 403 at once, a deleted file_meta 404', async () => {
    const u = await syncUser();
    const member = await signedInUser();
    await upsertMember(env, u.workspaceId, member.id, 'editor');
    const { hash } = await genericFile(u, 'notes.html');
    const { body } = await downloadUrl(member, u.workspaceId, hash, { file_kind_capability: 'v1' });
    expect((await fetchUrl(body.url)).status).toBe(200);
    // Removed through the API (which tells the workspace's object at once).
    expect((await call('DELETE', `/api/workspaces/${u.workspaceId}/members/${member.id}`, u.headers)).status).toBe(200);
    expect((await fetchUrl(body.url)).status).toBe(403);
    const own = await downloadUrl(u, u.workspaceId, hash, { file_kind_capability: 'v1' });
    const deleted = await call('POST', '/api/sync/push', u.headers, {
      scope: { workspaceId: u.workspaceId },
      ops: [op('file_meta', hash, undefined, { operation: 'delete', clock: 5 })],
      ...FILES,
    });
    expect(deleted.status).toBe(200);
    expect((await fetchUrl(own.body.url)).status).toBe(404);
  });
});

describe('empty files', () => {
  it('a zero-byte file uploads, commits and downloads (OR3 accepts empty files)', async () => {
    const u = await syncUser();
    const empty = new Uint8Array(0);
    const { res, hash, body } = await presignUpload(u, u.workspaceId, empty, 'image/png');
    expect(res.status, await res.clone().text()).toBe(200);
    const stored = await put(body.url, empty, body.headers);
    expect(stored.status, await stored.clone().text()).toBe(200);
    expect((await commit(u, u.workspaceId, hash, body.storageId, 0, { intent_id: body.intentId })).status).toBe(200);
    const { body: download } = await downloadUrl(u, u.workspaceId, hash);
    const got = await fetchUrl(download.url);
    expect(got.status).toBe(200);
    expect((await got.arrayBuffer()).byteLength).toBe(0);
    // A negative or fractional size is still a 400.
    for (const size_bytes of [-1, 1.5]) {
      const bad = await call('POST', '/api/storage/presign-upload', u.headers, { workspace_id: u.workspaceId, hash, mime_type: 'image/png', size_bytes });
      expect(bad.status).toBe(400);
    }
  });
});
