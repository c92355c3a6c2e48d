/**
 * The workspace's storage quota (docs/storage.md "Quota"), checked once per step by the workspace's
 * object against OR3_STORAGE_WORKSPACE_QUOTA_BYTES from its own configuration: 1000 bytes in this
 * project (vitest.config.ts `worker-limits`). Presign reserves (upload intents), commit charges,
 * and multipart checks at create, urls and complete.
 */
import { env } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { apiWithEnv, json } from '../helpers';
import { syncUser } from '../sync/helpers';
import { commit, fetchUrl, intentStatus, presignUpload, put, randomBytes, sha256 } from '../storage/helpers';

describe('storage quota (1000 bytes here)', () => {
  it('refuses files over the size limit and the quota with 413, and lets exactly one of two concurrent commits through at the quota edge', async () => {
    const u = await syncUser();
    // The quota (1000 bytes) is this project's, read by the object; the file-size limit is the Worker's.
    const vars = { OR3_MAX_CLOUD_FILE_SIZE_BYTES: '800' };
    const presign = (bytes: Uint8Array, hash: string) =>
      apiWithEnv(vars, '/api/storage/presign-upload', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({ workspace_id: u.workspaceId, hash, mime_type: 'image/png', size_bytes: bytes.byteLength }),
      });
    const big = randomBytes(900);
    expect((await presign(big, await sha256(big))).status).toBe(413);
    const [a, b] = [randomBytes(600), randomBytes(600)];
    const uploads = [];
    // The first presign reserves its 600 bytes (an upload intent), so a second one over the quota is refused at once.
    const hashA = await sha256(a);
    const first = await presign(a, hashA);
    expect(first.status).toBe(200);
    const firstBody = await first.json<any>();
    expect((await put(firstBody.url, a, firstBody.headers)).status).toBe(200);
    uploads.push({ hash: hashA, storageId: firstBody.storageId });
    const hashB = await sha256(b);
    expect((await presign(b, hashB)).status).toBe(413);
    // Bytes that got there anyway (a client that predates intents, an earlier presign): the commit is still the last word.
    const keyB = `ws/${u.workspaceId}/sha256/${hashB.slice(7)}`;
    await env.BLOBS.put(keyB, b, { customMetadata: { verified: 'sha256' } });
    uploads.push({ hash: hashB, storageId: keyB });
    const commitWith = (x: { hash: string; storageId: string }) =>
      apiWithEnv(vars, '/api/storage/commit', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          workspace_id: u.workspaceId,
          hash: x.hash,
          storage_id: x.storageId,
          storage_provider_id: 'r2',
          mime_type: 'image/png',
          size_bytes: 600,
          name: 'f',
          kind: 'image',
        }),
      });
    const results = await Promise.all(uploads.map(commitWith));
    expect(results.map((r) => r.status).sort()).toEqual([200, 413]);
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
    expect(usage.used_bytes).toBe(600);
  });

  it('an intent reserves its bytes until it expires: two uploads over the quota → the second is refused; expiry frees the reservation', async () => {
    const u = await syncUser();
    const presign = async (bytes: Uint8Array) =>
      call('POST', '/api/storage/presign-upload', u.headers, {
        workspace_id: u.workspaceId,
        hash: await sha256(bytes),
        mime_type: 'image/png',
        size_bytes: bytes.byteLength,
      });
    const [a, b] = [randomBytes(600), randomBytes(600)];
    // Concurrently: exactly one of the two reservations fits.
    const both = await Promise.all([presign(a), presign(b)]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 413]);
    const winner = await both.find((r) => r.status === 200)!.json<any>();
    const loserBytes = both[0]!.status === 200 ? b : a;
    // The same hash again reserves nothing more.
    expect((await presign(both[0]!.status === 200 ? a : b)).status).toBe(200);
    // Expired (as if its 15 minutes had passed): the reservation is free again.
    await runInDurableObject(env.WORKSPACE.getByName(u.workspaceId), (_o, state) => {
      state.storage.sql.exec('UPDATE upload_intents SET expires_at = ? WHERE hash = ?', Date.now() - 1, winner.storageId.replace(/^.*\/sha256\//, 'sha256:'));
    });
    expect((await presign(loserBytes)).status).toBe(200);
    expect(await intentStatus(u.workspaceId, winner.intentId)).toBe('expired');
  });

  it('multipart checks the quota again at /complete: bytes committed while the parts went up make it 413, and nothing is kept', async () => {
    const u = await syncUser();
    const bytes = randomBytes(600);
    const hash = await sha256(bytes);
    const created = await call('POST', '/api/storage/multipart/create', u.headers, {
      workspace_id: u.workspaceId,
      hash,
      mime_type: 'application/pdf',
      size_bytes: bytes.byteLength,
    });
    expect(created.status).toBe(200);
    const plan = await created.json<any>();
    const [part] = plan.parts;
    const sent = await fetchUrl(part.url, { method: 'PUT', headers: { 'content-length': String(part.size) }, body: bytes });
    expect(sent.status).toBe(200);
    const etag = await sent.json<{ partNumber: number; etag: string }>();
    // Meanwhile another 600 bytes are committed: the two no longer fit in 1000.
    const other = randomBytes(600);
    const { hash: otherHash, body } = await presignUpload(u, u.workspaceId, other);
    expect((await put(body.url, other, body.headers)).status).toBe(200);
    const committed = await commit(u, u.workspaceId, otherHash, body.storageId, 600, { intent_id: body.intentId });
    expect(committed.status).toBe(200);
    const done = await call('POST', '/api/storage/multipart/complete', u.headers, {
      workspace_id: u.workspaceId,
      hash,
      upload_id: plan.uploadId,
      parts: [etag],
    });
    expect(done.status).toBe(413);
    expect(await done.json()).toMatchObject({ error: 'quota_exceeded' });
    expect((await env.BLOBS.list({ prefix: `staging/ws/${u.workspaceId}/` })).objects).toEqual([]);
    const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
    expect(usage).toMatchObject({ used_bytes: 600, blob_count: 1 });
    // Create itself is refused once the workspace is full.
    const again = await call('POST', '/api/storage/multipart/create', u.headers, {
      workspace_id: u.workspaceId,
      hash: await sha256(randomBytes(16)),
      mime_type: 'application/pdf',
      size_bytes: 600,
    });
    expect(again.status).toBe(413);
    expect(await again.json()).toMatchObject({ error: 'quota_exceeded' });
  });

  it("the quota a request names is the object's own: a Worker configured otherwise does not move it", async () => {
    const u = await syncUser();
    const bytes = randomBytes(1200);
    const presign = await apiWithEnv(
      { OR3_STORAGE_WORKSPACE_QUOTA_BYTES: '1000000' },
      '/api/storage/presign-upload',
      json({ workspace_id: u.workspaceId, hash: await sha256(bytes), mime_type: 'image/png', size_bytes: bytes.byteLength }, u.headers),
    );
    expect(presign.status).toBe(413);
    expect(await presign.json()).toMatchObject({ error: 'quota_exceeded' });
  });
});
