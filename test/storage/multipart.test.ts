import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { call } from '../auth/helpers';
import { apiWithEnv, json } from '../helpers';
import { syncUser, type SyncUser } from '../sync/helpers';
import { commit, downloadUrl, fetchUrl, randomBytes, sha256 } from './helpers';

const MiB = 1024 * 1024;

describe('multipart uploads (large files)', () => {
  it('resumes after an interrupted part with fresh URLs, completes, verifies, and downloads byte-identical', async () => {
    const u = await syncUser();
    const bytes = randomBytes(11 * MiB);
    const hash = await sha256(bytes);
    const created = await call('POST', '/api/storage/multipart/create', u.headers, {
      workspace_id: u.workspaceId,
      hash,
      mime_type: 'application/pdf',
      size_bytes: bytes.byteLength,
      part_size_bytes: 5 * MiB,
    });
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
    const fresh = await (
      await call('POST', '/api/storage/multipart/urls', u.headers, {
        workspace_id: u.workspaceId,
        hash,
        size_bytes: bytes.byteLength,
        part_size_bytes: 5 * MiB,
        upload_id: plan.uploadId,
        part_numbers: [2, 3],
      })
    ).json<any>();
    for (const part of fresh.parts) {
      const res = await putPart(part.url, slice(part.partNumber), part.size);
      expect(res.status).toBe(200);
      etags.push(await res.json());
    }
    const done = await call('POST', '/api/storage/multipart/complete', u.headers, {
      workspace_id: u.workspaceId,
      hash,
      upload_id: plan.uploadId,
      parts: etags,
    });
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
    const plan = await (
      await call('POST', '/api/storage/multipart/create', u.headers, {
        workspace_id: u.workspaceId,
        hash: claimed,
        mime_type: 'application/pdf',
        size_bytes: bytes.byteLength,
        part_size_bytes: 5 * MiB,
      })
    ).json<any>();
    const moved = new URL(plan.parts[0].url);
    moved.pathname = moved.pathname.replace(/parts\/1$/, 'parts/2');
    expect((await fetchUrl(moved.toString(), { method: 'PUT', headers: { 'content-length': String(5 * MiB) }, body: bytes.subarray(0, 5 * MiB) })).status).toBe(
      403,
    );
    const etags = [];
    for (const part of plan.parts) {
      const chunk = bytes.subarray((part.partNumber - 1) * 5 * MiB, (part.partNumber - 1) * 5 * MiB + part.size);
      etags.push(await (await fetchUrl(part.url, { method: 'PUT', headers: { 'content-length': String(part.size) }, body: chunk })).json());
    }
    const done = await call('POST', '/api/storage/multipart/complete', u.headers, {
      workspace_id: u.workspaceId,
      hash: claimed,
      upload_id: plan.uploadId,
      parts: etags,
    });
    expect(done.status).toBe(422);
    expect(await env.BLOBS.head(plan.storageId)).toBeNull();
  });

  describe('the size is fixed at create (SECURITY.md §33)', () => {
    const limit = { OR3_MAX_CLOUD_FILE_SIZE_BYTES: String(MiB) };
    /** A route called with `overrides` layered over the test configuration. */
    const callWith = (overrides: Record<string, string>, path: string, u: SyncUser, body: unknown) => apiWithEnv(overrides, path, json(body, u.headers));

    /** Nothing in R2 for the workspace (staged or final), and nothing charged. */
    async function nothingStoredOrCharged(u: SyncUser) {
      for (const prefix of [`ws/${u.workspaceId}/`, `staging/ws/${u.workspaceId}/`]) expect((await env.BLOBS.list({ prefix })).objects, prefix).toEqual([]);
      const usage = await (await call('GET', `/api/storage/usage?workspace_id=${u.workspaceId}`, u.headers)).json<any>();
      expect(usage).toMatchObject({ used_bytes: 0, blob_count: 0 });
    }

    async function uploadAll(plan: { parts: { partNumber: number; size: number; url: string }[] }, bytes: Uint8Array, partSize: number) {
      const etags = [];
      for (const part of plan.parts) {
        const chunk = bytes.subarray((part.partNumber - 1) * partSize, (part.partNumber - 1) * partSize + part.size);
        const res = await fetchUrl(part.url, { method: 'PUT', headers: { 'content-length': String(part.size) }, body: chunk });
        expect(res.status).toBe(200);
        etags.push(await res.json<{ partNumber: number; etag: string }>());
      }
      return etags;
    }

    it('refuses /urls for any size but the declared one, and runs the upload policy again there', async () => {
      const u = await syncUser();
      const hash = await sha256(randomBytes(16));
      const created = await callWith(limit, '/api/storage/multipart/create', u, {
        workspace_id: u.workspaceId,
        hash,
        mime_type: 'application/pdf',
        size_bytes: MiB,
      });
      expect(created.status).toBe(200);
      const plan = await created.json<any>();
      expect(plan.parts.map((p: any) => p.size)).toEqual([MiB]);

      // The attack: resume the 1 MiB upload as a 2 MiB or a 12 MiB one.
      for (const [size, partSize] of [
        [2 * MiB, undefined],
        [12 * MiB, 5 * MiB],
      ] as const) {
        const res = await callWith(limit, '/api/storage/multipart/urls', u, {
          workspace_id: u.workspaceId,
          hash,
          size_bytes: size,
          ...(partSize ? { part_size_bytes: partSize } : {}),
          upload_id: plan.uploadId,
        });
        expect(res.status, `${size}`).toBe(400);
        expect(await res.json()).toMatchObject({ error: 'size_mismatch', message: expect.stringContaining(String(MiB)) });
      }
      // The declared size under a limit that has since been lowered: the policy refuses it.
      const lower = await callWith({ OR3_MAX_CLOUD_FILE_SIZE_BYTES: String(MiB - 1) }, '/api/storage/multipart/urls', u, {
        workspace_id: u.workspaceId,
        hash,
        size_bytes: MiB,
        upload_id: plan.uploadId,
      });
      expect(lower.status).toBe(413);
      expect(await lower.json()).toMatchObject({ error: 'file_too_large' });
      // An upload id edited to declare another size is not ours.
      const forged = plan.uploadId.replace(/^m1\.\d+\./, `m1.${12 * MiB}.`);
      const res = await callWith(limit, '/api/storage/multipart/urls', u, { workspace_id: u.workspaceId, hash, size_bytes: 12 * MiB, upload_id: forged });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'invalid_upload' });
      // The declared size itself still gets its URL.
      const ok = await callWith(limit, '/api/storage/multipart/urls', u, { workspace_id: u.workspaceId, hash, size_bytes: MiB, upload_id: plan.uploadId });
      expect((await ok.json<any>()).parts.map((p: any) => p.size)).toEqual([MiB]);
      await nothingStoredOrCharged(u);
    });

    it('refuses at /complete an assembly over the file-size limit (413), and keeps nothing', async () => {
      const u = await syncUser();
      const bytes = randomBytes(2 * MiB);
      const hash = await sha256(bytes);
      const start = async () => {
        const plan = await (
          await call('POST', '/api/storage/multipart/create', u.headers, {
            workspace_id: u.workspaceId,
            hash,
            mime_type: 'application/pdf',
            size_bytes: bytes.byteLength,
          })
        ).json<any>();
        return { plan, parts: await uploadAll(plan, bytes, plan.partSize) };
      };
      // The limit is lowered while the parts are going up (the quota filled meanwhile: test/limits/storage-quota.test.ts).
      for (const [overrides, code] of [[limit, 'file_too_large']] as const) {
        const { plan, parts } = await start();
        const done = await callWith(overrides, '/api/storage/multipart/complete', u, { workspace_id: u.workspaceId, hash, upload_id: plan.uploadId, parts });
        expect(done.status, code).toBe(413);
        expect(await done.json()).toMatchObject({ error: code });
        await nothingStoredOrCharged(u);
        // The refused upload is gone; completing it again fails cleanly, without R2's own words.
        const again = await call('POST', '/api/storage/multipart/complete', u.headers, { workspace_id: u.workspaceId, hash, upload_id: plan.uploadId, parts });
        expect(again.status).toBe(400);
        expect(await again.json()).toEqual({
          error: 'multipart_failed',
          message: 'The upload could not be completed: check the part numbers and etags, or ask /multipart/urls for the missing parts',
        });
        await nothingStoredOrCharged(u);
      }
    });

    it('refuses an assembly smaller than declared (missing parts) and removes it', async () => {
      const u = await syncUser();
      const bytes = randomBytes(6 * MiB);
      const hash = await sha256(bytes);
      const plan = await (
        await call('POST', '/api/storage/multipart/create', u.headers, {
          workspace_id: u.workspaceId,
          hash,
          mime_type: 'application/pdf',
          size_bytes: bytes.byteLength,
          part_size_bytes: 5 * MiB,
        })
      ).json<any>();
      const [first] = await uploadAll({ parts: plan.parts.slice(0, 1) }, bytes, 5 * MiB);
      const done = await call('POST', '/api/storage/multipart/complete', u.headers, {
        workspace_id: u.workspaceId,
        hash,
        upload_id: plan.uploadId,
        parts: [first],
      });
      expect(done.status).toBe(422);
      expect(await done.json()).toMatchObject({ error: 'size_mismatch' });
      await nothingStoredOrCharged(u);
    });

    it('answers a part upload that R2 refuses with a generic message, never R2 internals', async () => {
      const u = await syncUser();
      const hash = await sha256(randomBytes(16));
      const plan = await (
        await call('POST', '/api/storage/multipart/create', u.headers, { workspace_id: u.workspaceId, hash, mime_type: 'application/pdf', size_bytes: MiB })
      ).json<any>();
      await call('POST', '/api/storage/multipart/abort', u.headers, { workspace_id: u.workspaceId, hash, upload_id: plan.uploadId });
      const res = await fetchUrl(plan.parts[0].url, { method: 'PUT', headers: { 'content-length': String(MiB) }, body: randomBytes(MiB) });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: 'part_upload_failed',
        message: 'The part was not stored (interrupted, or the upload is gone); retry it with a fresh URL from /multipart/urls',
      });
    });
  });
});
