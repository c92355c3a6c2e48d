import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { syncUser } from '../sync/helpers';
import { commit, downloadUrl, fetchUrl, randomBytes, sha256 } from './helpers';

const MiB = 1024 * 1024;

describe('multipart uploads (large files)', () => {
  it('resumes after an interrupted part with fresh URLs, completes, verifies, and downloads byte-identical', async () => {
    const u = await syncUser();
    const bytes = randomBytes(11 * MiB);
    const hash = await sha256(bytes);
    const created = await call('POST', '/api/storage/multipart/create', u.headers, { workspace_id: u.workspaceId, hash, mime_type: 'application/pdf', size_bytes: bytes.byteLength, part_size_bytes: 5 * MiB });
    expect(created.status).toBe(200);
    const plan = await created.json<any>();
    expect(plan).toMatchObject({ alreadyPresent: false, partSize: 5 * MiB, partCount: 3 });
    expect(plan.parts.map((p: any) => p.size)).toEqual([5 * MiB, 5 * MiB, MiB]);
    const slice = (n: number) => bytes.subarray((n - 1) * 5 * MiB, Math.min(n * 5 * MiB, bytes.byteLength));
    const putPart = (url: string, body: BodyInit, length: number) => fetchUrl(url, { method: 'PUT', headers: { 'content-length': String(length) }, body });

    const etags: { partNumber: number; etag: string }[] = [];
    const first = await putPart(plan.parts[0].url, slice(1), slice(1).byteLength);
    expect(first.status).toBe(200);
    etags.push(await first.json());

    // Part 2 dies half-way through: nothing is stored for it.
    let sent = 0;
    const dying = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 * MiB) return controller.error(new Error('connection lost'));
        controller.enqueue(slice(2).subarray(sent, sent + MiB));
        sent += MiB;
      },
    });
    const interrupted = await putPart(plan.parts[1].url, dying, slice(2).byteLength).catch(() => null);
    expect(interrupted === null || interrupted.status >= 400).toBe(true);

    // Later (URLs may have expired): ask for fresh URLs for the missing parts and carry on.
    const fresh = await (await call('POST', '/api/storage/multipart/urls', u.headers, { workspace_id: u.workspaceId, hash, size_bytes: bytes.byteLength, part_size_bytes: 5 * MiB, upload_id: plan.uploadId, part_numbers: [2, 3] })).json<any>();
    for (const part of fresh.parts) {
      const res = await putPart(part.url, slice(part.partNumber), part.size);
      expect(res.status).toBe(200);
      etags.push(await res.json());
    }
    const done = await call('POST', '/api/storage/multipart/complete', u.headers, { workspace_id: u.workspaceId, hash, upload_id: plan.uploadId, parts: etags });
    expect(await done.json()).toEqual({ ok: true, storageId: plan.storageId, alreadyPresent: false });
    expect((await commit(u, u.workspaceId, hash, plan.storageId, bytes.byteLength, { mime_type: 'application/pdf', kind: 'pdf' })).status).toBe(200);

    const { body } = await downloadUrl(u, u.workspaceId, hash);
    const got = new Uint8Array(await (await fetchUrl(body.url)).arrayBuffer());
    expect(got.byteLength).toBe(bytes.byteLength);
    expect(await sha256(got)).toBe(hash);
  });

  it('refuses a part URL replayed into another position, and removes an assembly that does not match its hash', async () => {
    const u = await syncUser();
    const bytes = randomBytes(6 * MiB);
    const claimed = await sha256(randomBytes(16));
    const plan = await (await call('POST', '/api/storage/multipart/create', u.headers, { workspace_id: u.workspaceId, hash: claimed, mime_type: 'application/pdf', size_bytes: bytes.byteLength, part_size_bytes: 5 * MiB })).json<any>();
    const moved = new URL(plan.parts[0].url);
    moved.pathname = moved.pathname.replace(/parts\/1$/, 'parts/2');
    expect((await fetchUrl(moved.toString(), { method: 'PUT', headers: { 'content-length': String(5 * MiB) }, body: bytes.subarray(0, 5 * MiB) })).status).toBe(403);
    const etags = [];
    for (const part of plan.parts) {
      const chunk = bytes.subarray((part.partNumber - 1) * 5 * MiB, (part.partNumber - 1) * 5 * MiB + part.size);
      etags.push(await (await fetchUrl(part.url, { method: 'PUT', headers: { 'content-length': String(part.size) }, body: chunk })).json());
    }
    const done = await call('POST', '/api/storage/multipart/complete', u.headers, { workspace_id: u.workspaceId, hash: claimed, upload_id: plan.uploadId, parts: etags });
    expect(done.status).toBe(422);
    expect(await env.BLOBS.head(plan.storageId)).toBeNull();
  });
});
