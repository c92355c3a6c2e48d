import { env } from 'cloudflare:workers';
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { upsertMember } from '../../src/workspace-records/member-writes';
import { createApp } from '../../src/app';
import { defaultStorageHooks } from '../../src/storage/hooks';
import { forbidden } from '../../src/errors';
import { call, signedInUser } from '../auth/helpers';
import { apiWithEnv, probeFetch } from '../helpers';
import { message, op, pushOk, syncUser } from '../sync/helpers';
import { bytesOf, commit, downloadUrl, fetchUrl, presignUpload, put, randomBytes, sha256, store } from './helpers';

describe('upload → commit → download', () => {
  it('round-trips the exact bytes with the right headers, and counts usage', async () => {
    const u = await syncUser();
    const bytes = randomBytes(70_000);
    const { res, hash, body } = await presignUpload(u, u.workspaceId, bytes);
    expect(res.status).toBe(200);
    expect(body).toMatchObject({
      method: 'PUT',
      headers: { 'content-type': 'image/png' },
      storageId: `ws/${u.workspaceId}/sha256/${hash.slice(7)}`,
      storageProviderId: 'r2',
      alreadyPresent: false,
    });
    expect(body.url).toMatch(/^https:\/\/or3\.test\/api\/storage\/blob\//);
    expect(body.expiresAt - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    expect((await put(body.url, bytes, body.headers)).status).toBe(200);
    expect((await commit(u, u.workspaceId, hash, body.storageId, bytes.byteLength)).status).toBe(200);

    const download = await downloadUrl(u, u.workspaceId, hash, { disposition: 'attachment' });
    expect(download.body).toMatchObject({ method: 'GET' });
    const got = await fetchUrl(download.body.url);
    expect(got.status).toBe(200);
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes);
    expect(got.headers.get('content-type')).toBe('image/png');
    expect(got.headers.get('content-disposition')).toBe(`attachment; filename="${hash.slice(7)}"`);
    expect(got.headers.get('cache-control')).toMatch(/^private, max-age=\d+$/);
    expect(got.headers.get('etag')).toBeTruthy();
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json();
    expect(usage).toEqual({ used_bytes: 70_000, quota_bytes: 1073741824, blob_count: 1, sync_bytes: 0, sync_quota_bytes: 1073741824 });
  });

  it('serves HTTP ranges', async () => {
    const u = await syncUser();
    const bytes = bytesOf('0123456789abcdef');
    const { hash } = await store(u, u.workspaceId, bytes);
    const { body } = await downloadUrl(u, u.workspaceId, hash);
    const part = await fetchUrl(body.url, { headers: { range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-5/16');
    expect(await part.text()).toBe('2345');
    const tail = await fetchUrl(body.url, { headers: { range: 'bytes=-3' } });
    expect(tail.status).toBe(206);
    expect(await tail.text()).toBe('def');
  });

  it('rejects wrong bytes with 422 and stores nothing', async () => {
    const u = await syncUser();
    const bytes = bytesOf('the real content');
    const { body } = await presignUpload(u, u.workspaceId, bytes);
    const res = await put(body.url, bytesOf('forged content!!'), body.headers);
    expect(res.status).toBe(422);
    expect(await env.BLOBS.head(body.storageId)).toBeNull();
  });

  it('stores identical content once and charges it once', async () => {
    const u = await syncUser();
    const bytes = bytesOf('same bytes twice');
    const first = await store(u, u.workspaceId, bytes);
    const again = await presignUpload(u, u.workspaceId, bytes);
    expect(again.body.alreadyPresent).toBe(true);
    const reput = await put(again.body.url, bytes, again.body.headers);
    expect(await reput.json()).toEqual({ ok: true, alreadyPresent: true });
    expect((await commit(u, u.workspaceId, first.hash, first.storageId, bytes.byteLength)).status).toBe(200);
    const listed = await env.BLOBS.list({ prefix: `ws/${u.workspaceId}/` });
    expect(listed.objects).toHaveLength(1);
    expect((await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>()).used_bytes).toBe(bytes.byteLength);
  });

  it('requires Content-Length to match the signed size', async () => {
    const u = await syncUser();
    const bytes = bytesOf('twelve bytes');
    const { body } = await presignUpload(u, u.workspaceId, bytes);
    const res = await put(body.url, bytesOf('twelve bytez!'), { ...body.headers, 'content-length': '13' });
    expect(res.status).toBe(400);
  });
});

describe('signed URLs', () => {
  async function signedPut() {
    const u = await syncUser();
    const bytes = bytesOf('signed url bytes');
    const { body, hash } = await presignUpload(u, u.workspaceId, bytes);
    return { u, bytes, url: new URL(body.url), hash, body };
  }

  it('refuses tampered method, hash, size, workspace, expiry and signature with 403', async () => {
    const { u, bytes, url } = await signedPut();
    const other = await syncUser();
    const variants: [string, (x: URL) => void][] = [
      ['hash', (x) => (x.pathname = x.pathname.replace(/[0-9a-f]$/, (ch) => (ch === '0' ? '1' : '0')))],
      ['size', (x) => x.searchParams.set('size', String(bytes.byteLength + 1))],
      ['workspace', (x) => (x.pathname = x.pathname.replace(u.workspaceId, other.workspaceId))],
      ['expiry', (x) => x.searchParams.set('exp', String(Number(x.searchParams.get('exp')) + 60_000))],
      ['type', (x) => x.searchParams.set('type', 'text/html')],
      [
        'signature',
        (x) => {
          const sig = x.searchParams.get('sig')!;
          x.searchParams.set('sig', (sig.startsWith('A') ? 'B' : 'A') + sig.slice(1));
        },
      ],
      ['kid', (x) => x.searchParams.set('kid', 'nope')],
    ];
    for (const [name, mutate] of variants) {
      const tampered = new URL(url);
      mutate(tampered);
      const res = await put(tampered.toString(), bytes, { 'content-type': 'image/png' });
      expect(res.status, name).toBe(403);
    }
    // An upload URL used for GET (method is signed).
    expect((await fetchUrl(url.toString())).status).toBe(403);
  });

  it('answers 410 for an expired URL', async () => {
    const { bytes, url } = await signedPut();
    const { sign, urlKeys } = await import('../../src/storage/signing');
    const expired = Date.now() - 1000;
    const key = url.pathname.replace('/api/storage/blob/', 'ws/');
    const [ws] = key.split('/').slice(1);
    const { kid, sig } = await sign(await urlKeys(env.OR3_STORAGE_URL_SECRET), {
      method: 'PUT',
      workspaceId: ws!,
      key,
      expires: expired,
      size: bytes.byteLength,
      hash: 'sha256:' + key.split('/').pop(),
      disposition: 'inline',
      contentType: 'image/png',
    });
    url.searchParams.set('exp', String(expired));
    url.searchParams.set('kid', kid);
    url.searchParams.set('sig', sig);
    expect((await put(url.toString(), bytes, { 'content-type': 'image/png' })).status).toBe(410);
  });

  it('keeps URLs signed with the previous secret valid during rotation, and refuses them once retired', async () => {
    const { bytes, url } = await signedPut();
    const rotated = { OR3_STORAGE_URL_SECRET: 'rotated-url-secret-0123456789abcdef0123456789', OR3_STORAGE_URL_SECRET_PREVIOUS: env.OR3_STORAGE_URL_SECRET };
    const putWith = (vars: Record<string, string>) =>
      apiWithEnv(vars, url.pathname + url.search, {
        method: 'PUT',
        headers: { 'content-length': String(bytes.byteLength), 'content-type': 'image/png' },
        body: bytes,
      });
    expect((await putWith({ OR3_STORAGE_URL_SECRET: 'rotated-url-secret-0123456789abcdef0123456789' })).status).toBe(403);
    expect((await putWith(rotated)).status).toBe(200);
  });

  it('clamps requested lifetimes to 15 min for uploads and 1 h for downloads', async () => {
    const u = await syncUser();
    const bytes = bytesOf('clamp me');
    const { body } = await presignUpload(u, u.workspaceId, bytes, 'image/png', { expires_in_ms: 24 * 3600_000 });
    expect(body.expiresAt - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    const { hash } = await store(u, u.workspaceId, bytes);
    const dl = await downloadUrl(u, u.workspaceId, hash, { expires_in_ms: 24 * 3600_000 });
    expect(dl.body.expiresAt - Date.now()).toBeLessThanOrEqual(3600_000);
    expect(dl.body.expiresAt - Date.now()).toBeGreaterThan(3500_000);
  });
});

describe('access and policies', () => {
  it('refuses non-members everywhere and viewers on writes', async () => {
    const u = await syncUser();
    const { hash, storageId } = await store(u, u.workspaceId, bytesOf('private bytes'));
    const viewer = await signedInUser();
    const stranger = await signedInUser();
    await upsertMember(env, u.workspaceId, viewer.id, 'viewer');
    expect((await presignUpload(viewer, u.workspaceId, bytesOf('viewer upload'))).res.status).toBe(403);
    expect((await downloadUrl(viewer, u.workspaceId, hash)).res.status).toBe(200);
    expect((await call('POST', '/api/storage/delete', viewer.headers, { workspace_id: u.workspaceId, hash })).status).toBe(403);
    for (const [path, body] of [
      ['/api/storage/presign-download', { workspace_id: u.workspaceId, hash }],
      ['/api/storage/presign-upload', { workspace_id: u.workspaceId, hash, mime_type: 'image/png', size_bytes: 10 }],
      [
        '/api/storage/commit',
        {
          workspace_id: u.workspaceId,
          hash,
          storage_id: storageId,
          storage_provider_id: 'r2',
          mime_type: 'image/png',
          size_bytes: 13,
          name: 'x',
          kind: 'image',
        },
      ],
      ['/api/storage/delete', { workspace_id: u.workspaceId, hash }],
      ['/api/storage/gc/run', { workspace_id: u.workspaceId }],
    ] as const) {
      expect((await call('POST', path, stranger.headers, body)).status, path).toBe(403);
    }
    expect((await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, stranger.headers)).status).toBe(403);
  });

  it('refuses a MIME type outside the allow-list with 415, and bad hashes with 400', async () => {
    const u = await syncUser();
    expect((await presignUpload(u, u.workspaceId, bytesOf('<html>'), 'text/html')).res.status).toBe(415);
    const bad = await call('POST', '/api/storage/presign-upload', u.headers, {
      workspace_id: u.workspaceId,
      hash: 'md5:' + 'a'.repeat(32),
      mime_type: 'image/png',
      size_bytes: 1,
    });
    expect(bad.status).toBe(400);
    const junk = await call('POST', '/api/storage/presign-download', u.headers, { workspace_id: u.workspaceId, hash: '../../etc/passwd' });
    expect(junk.status).toBe(400);
  });

  it('lets an upload policy hook, injected through createApp, reject with a descriptive error', async () => {
    const u = await syncUser();
    const hooks = defaultStorageHooks();
    hooks.on('storage.files.upload:filter:policy', (ctx) => {
      if (ctx.sizeBytes === 13) throw forbidden('Thirteen-byte files are unlucky', 'policy_rejected');
    });
    const app = createApp({ storage: { hooks } });
    const presign = async (bytes: Uint8Array) =>
      probeFetch(app, '/api/storage/presign-upload', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ workspace_id: u.workspaceId, hash: await sha256(bytes), mime_type: 'image/png', size_bytes: bytes.byteLength }),
      });
    const res = await presign(bytesOf('thirteen byte'));
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'policy_rejected', message: 'Thirteen-byte files are unlucky' });
    expect((await presign(bytesOf('fourteen bytes'))).status).toBe(200);
    // The app without the hook is unaffected.
    expect((await presignUpload(u, u.workspaceId, bytesOf('thirteen byte'))).res.status).toBe(200);
  });

  it('lets a URL hook shorten expiry and change disposition, never extend past the maximum', async () => {
    const u = await syncUser();
    const { hash } = await store(u, u.workspaceId, bytesOf('hooked download'));
    const hooks = defaultStorageHooks();
    hooks.on('storage.files.url:filter:options', (o) => ({ ...o, expiresAt: o.expiresAt + 10 * 24 * 3600_000, disposition: 'attachment' }));
    const app = createApp({ storage: { hooks } });
    const res = await probeFetch(app, '/api/storage/presign-download', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ workspace_id: u.workspaceId, hash }),
    });
    const body = await res.json<any>();
    expect(body.expiresAt - Date.now()).toBeLessThanOrEqual(3600_000);
    expect(body.url).toContain('disp=attachment');
  });

  it('looks up legacy md5 files by md5:<hex> and bare hex', async () => {
    const u = await syncUser();
    const md5 = 'c'.repeat(32);
    await env.BLOBS.put(`ws/${u.workspaceId}/md5/${md5}`, bytesOf('legacy file'), { httpMetadata: { contentType: 'application/pdf' } });
    for (const hash of [`md5:${md5}`, md5]) {
      const { res, body } = await downloadUrl(u, u.workspaceId, hash);
      expect(res.status).toBe(200);
      expect(await (await fetchUrl(body.url)).text()).toBe('legacy file');
    }
    expect((await downloadUrl(u, u.workspaceId, 'd'.repeat(32))).res.status).toBe(404);
  });
});

describe('hardening', () => {
  it('serves downloads with nosniff and a sandbox CSP, 416 for unsatisfiable ranges and 412 for failed preconditions', async () => {
    const u = await syncUser();
    const { hash } = await store(u, u.workspaceId, bytesOf('sixteen bytes!!!'));
    const { body } = await downloadUrl(u, u.workspaceId, hash);
    const ok = await fetchUrl(body.url);
    expect(ok.headers.get('x-content-type-options')).toBe('nosniff');
    expect(ok.headers.get('content-security-policy')).toContain('sandbox');
    const beyond = await fetchUrl(body.url, { headers: { range: 'bytes=100-200' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe('bytes */16');
    expect((await fetchUrl(body.url, { headers: { 'if-match': '"not-the-etag"' } })).status).toBe(412);
    expect((await fetchUrl(body.url, { headers: { 'if-none-match': ok.headers.get('etag')! } })).status).toBe(304);
  });

  it('ignores a malformed If-None-Match (or other precondition): 200 with the body, never a 500', async () => {
    const u = await syncUser();
    const { hash } = await store(u, u.workspaceId, bytesOf('sixteen bytes!!!'));
    const { body } = await downloadUrl(u, u.workspaceId, hash);
    const malformed: Record<string, string>[] = [
      { 'if-none-match': 'garbage' },
      { 'if-none-match': '"unterminated' },
      { 'if-none-match': ',,,' },
      { 'if-match': 'garbage' },
      { 'if-unmodified-since': 'not a date' },
    ];
    for (const headers of malformed) {
      const res = await fetchUrl(body.url, { headers });
      expect(res.status, JSON.stringify(headers)).toBe(200);
      expect(await res.text()).toBe('sixteen bytes!!!');
    }
    // Well-formed ones still work, and a failed If-Range serves the whole body.
    const etag = (await fetchUrl(body.url)).headers.get('etag')!;
    expect((await fetchUrl(body.url, { headers: { 'if-none-match': `"x", W/${etag}` } })).status).toBe(304);
    const stale = await fetchUrl(body.url, { headers: { range: 'bytes=2-5', 'if-range': '"other"' } });
    expect(stale.status).toBe(200);
    expect(await stale.text()).toBe('sixteen bytes!!!');
    const fresh = await fetchUrl(body.url, { headers: { range: 'bytes=2-5', 'if-range': etag } });
    expect([fresh.status, await fresh.text()]).toEqual([206, 'xtee']);
  });

  it('answers unparsable and multi-range Range headers with 200 and the whole body, unsatisfiable ones with 416', async () => {
    const u = await syncUser();
    const { hash } = await store(u, u.workspaceId, bytesOf('sixteen bytes!!!'));
    const { body } = await downloadUrl(u, u.workspaceId, hash);
    for (const range of ['bytes=abc', 'bytes=0-1,3-4', 'items=0-1', 'bytes=5-2', 'bytes=', 'bytes=-']) {
      const res = await fetchUrl(body.url, { headers: { range } });
      expect(res.status, range).toBe(200);
      expect(res.headers.get('content-range'), range).toBeNull();
      expect(res.headers.get('content-length'), range).toBe('16');
      expect(await res.text(), range).toBe('sixteen bytes!!!');
    }
    for (const range of ['bytes=-0', 'bytes=16-', 'bytes=100-200']) {
      const res = await fetchUrl(body.url, { headers: { range } });
      expect(res.status, range).toBe(416);
      expect(res.headers.get('content-range'), range).toBe('bytes */16');
    }
    const clamped = await fetchUrl(body.url, { headers: { range: 'bytes=15-100' } });
    expect([clamped.status, clamped.headers.get('content-range'), await clamped.text()]).toEqual([206, 'bytes 15-15/16', '!']);
  });

  it('refuses MIME types that could break headers, and downloads of uploads never committed', async () => {
    const u = await syncUser();
    expect((await presignUpload(u, u.workspaceId, bytesOf('x'), 'image/png;\r\nx-evil: 1')).res.status).toBe(400);
    const bytes = bytesOf('uploaded, not committed');
    const { body, hash } = await presignUpload(u, u.workspaceId, bytes);
    await put(body.url, bytes, body.headers);
    expect((await downloadUrl(u, u.workspaceId, hash)).res.status).toBe(404);
  });

  it('delete leaves an upload that was never committed alone, and counts references however the hash is spelled', async () => {
    const u = await syncUser();
    const bytes = bytesOf('in flight upload');
    const { body, hash } = await presignUpload(u, u.workspaceId, bytes);
    await put(body.url, bytes, body.headers);
    expect((await call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash })).status).toBe(200);
    expect(await env.BLOBS.head(body.storageId)).not.toBeNull();
    const other = await store(u, u.workspaceId, bytesOf('shouty reference'));
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { file_hashes: JSON.stringify([other.hash.replace(/[a-f]/g, (ch) => ch.toUpperCase())]) })),
    ]);
    expect((await call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash: other.hash })).status).toBe(409);
  });
});

describe('delete and GC', () => {
  const hashes = (h: string) => JSON.stringify([h]);

  it('refuses to delete a blob referenced by a live message (409), then deletes it once unreferenced', async () => {
    const u = await syncUser();
    const { hash, storageId } = await store(u, u.workspaceId, bytesOf('referenced'));
    await pushOk(u, u.workspaceId, [op('messages', 'm1', message('m1', { file_hashes: hashes(hash) }))]);
    const refused = await call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash });
    expect(refused.status).toBe(409);
    await pushOk(u, u.workspaceId, [op('messages', 'm1', undefined, { operation: 'delete', clock: 2 })]);
    expect((await call('POST', '/api/storage/delete', u.headers, { workspace_id: u.workspaceId, hash })).status).toBe(200);
    expect(await env.BLOBS.head(storageId)).toBeNull();
    expect((await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>()).used_bytes).toBe(0);
  });

  it('GC deletes only confirmed orphans past retention, frees their bytes, and honours the cooldown', async () => {
    const u = await syncUser();
    const kept = await store(u, u.workspaceId, bytesOf('still referenced'));
    const orphan = await store(u, u.workspaceId, bytesOf('nobody needs me'));
    const young = await store(u, u.workspaceId, bytesOf('orphan but young'));
    const metaAlive = await store(u, u.workspaceId, bytesOf('file_meta alive'));
    await pushOk(u, u.workspaceId, [
      op('messages', 'm1', message('m1', { file_hashes: hashes(kept.hash) })),
      op('file_meta', metaAlive.hash, { hash: metaAlive.hash, deleted: false, created_at: 1, updated_at: 1, clock: 1 }),
      op('file_meta', orphan.hash, { hash: orphan.hash, deleted: true, created_at: 1, updated_at: 1, clock: 1 }),
    ]);
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_i, state) => {
      state.storage.sql.exec('UPDATE blobs SET committed_at = committed_at - 7200000 WHERE hash != ?', young.hash);
    });
    const res = await call('POST', '/api/storage/gc/run', u.headers, { workspace_id: u.workspaceId, retention_seconds: 3600 });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ deleted_count: 1, status: 'ok' });
    expect(await env.BLOBS.head(orphan.storageId)).toBeNull();
    for (const survivor of [kept, young, metaAlive]) expect(await env.BLOBS.head(survivor.storageId)).not.toBeNull();
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
    expect(usage.blob_count).toBe(3);
    const again = await call('POST', '/api/storage/gc/run', u.headers, { workspace_id: u.workspaceId, retention_seconds: 3600 });
    expect(again.status).toBe(429);
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('GC removes uploads that were never committed once past retention; editors cannot run it, deployment admins can', async () => {
    const u = await syncUser();
    const bytes = bytesOf('uploaded, never committed');
    const { body } = await presignUpload(u, u.workspaceId, bytes);
    await put(body.url, bytes, body.headers);
    const editor = await signedInUser();
    await upsertMember(env, u.workspaceId, editor.id, 'editor');
    expect((await call('POST', '/api/storage/gc/run', editor.headers, { workspace_id: u.workspaceId })).status).toBe(403);
    const admin = await signedInUser({ isAdmin: true });
    const res = await call('POST', '/api/storage/gc/run', admin.headers, { workspace_id: u.workspaceId, retention_seconds: 0 });
    expect(await res.json()).toMatchObject({ deleted_count: 1 });
    expect(await env.BLOBS.head(body.storageId)).toBeNull();
  });

  it('the workspace alarm runs the same blob GC', async () => {
    const u = await syncUser();
    const orphan = await store(u, u.workspaceId, bytesOf('alarm orphan'));
    const stub = env.WORKSPACE.getByName(u.workspaceId);
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec('UPDATE blobs SET committed_at = committed_at - ?', 8 * 24 * 3600_000);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await env.BLOBS.head(orphan.storageId)).toBeNull();
  });
});
