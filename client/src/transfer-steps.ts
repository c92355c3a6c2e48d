/**
 * The wire steps of one transfer, apart from the queue that schedules, persists and retries
 * them (transfers.ts). Uploads: presign → PUT → commit, or multipart create → part PUTs →
 * complete → commit for files above `multipartThresholdBytes`, resuming with the parts not
 * stored yet. Downloads: presign → GET with progress → verify against the hash → cache.
 * Each step reports progress through `update`, which persists it on the transfer's row.
 */
import type { FileTransfer, LocalDatabase } from './db.js';
import { hashBlob } from './hash.js';
import { errorFrom, HttpClient, Or3Error } from './http.js';

export interface TransferSteps {
  db: LocalDatabase;
  http: HttpClient;
  workspaceId: string;
  options: { multipartThresholdBytes: number; partSizeBytes: number };
  /** Persists changes to the running transfer (and reports its progress). */
  update(changes: Partial<FileTransfer>): Promise<void>;
}

export async function uploadFile(ctx: TransferSteps, t: FileTransfer): Promise<void> {
  const cached = await ctx.db.file_blobs.get(t.hash);
  if (!cached) throw new Or3Error(400, 'missing_local_file', 'The file to upload is no longer stored on this device');
  const blob = cached.blob;
  let storageId: string;
  let providerId = 'r2';
  if (blob.size > ctx.options.multipartThresholdBytes) {
    storageId = await uploadInParts(ctx, t, blob);
  } else {
    const presign = await ctx.http.json<{
      url: string;
      method: string;
      headers: Record<string, string>;
      storageId: string;
      storageProviderId?: string;
      alreadyPresent?: boolean;
    }>('POST', '/api/storage/presign-upload', {
      workspace_id: ctx.workspaceId,
      hash: t.hash,
      mime_type: t.mime_type,
      size_bytes: blob.size,
    });
    storageId = presign.storageId;
    providerId = presign.storageProviderId ?? providerId;
    if (!presign.alreadyPresent) {
      const res = await ctx.http.fetch(presign.url, { method: presign.method, headers: presign.headers, body: blob }, { timeoutMs: 10 * 60_000 });
      if (!res.ok) throw await errorFrom(res);
      await ctx.update({ bytes_done: blob.size });
    }
  }
  await ctx.http.json('POST', '/api/storage/commit', {
    workspace_id: ctx.workspaceId,
    hash: t.hash,
    storage_id: storageId,
    storage_provider_id: providerId,
    mime_type: t.mime_type,
    size_bytes: blob.size,
    name: t.name,
    kind: t.kind,
  });
  // The row other devices download by: now it names where the bytes are.
  const meta = await ctx.db.file_meta.get(t.hash);
  if (meta && meta.storage_id !== storageId) {
    await ctx.db.file_meta.put({ ...meta, storage_id: storageId, storage_provider_id: providerId, updated_at: Math.floor(Date.now() / 1000) });
  }
}

async function uploadInParts(ctx: TransferSteps, t: FileTransfer, blob: Blob): Promise<string> {
  type Part = { partNumber: number; size: number; url: string };
  if (t.completed && t.storageId) return t.storageId; // only the commit is left
  let parts: Part[];
  if (!t.uploadId) {
    const created = await ctx.http.json<{ uploadId?: string; storageId: string; partSize: number; parts: Part[]; alreadyPresent?: boolean }>(
      'POST',
      '/api/storage/multipart/create',
      {
        workspace_id: ctx.workspaceId,
        hash: t.hash,
        mime_type: t.mime_type,
        size_bytes: blob.size,
        part_size_bytes: ctx.options.partSizeBytes,
      },
    );
    if (created.alreadyPresent || !created.uploadId) {
      // The workspace already has these bytes: nothing to send.
      await ctx.update({ storageId: created.storageId, completed: true, bytes_done: blob.size });
      return created.storageId;
    }
    await ctx.update({ uploadId: created.uploadId, storageId: created.storageId, partSize: created.partSize, parts: [] });
    parts = created.parts;
  } else {
    // Resuming: fresh URLs for the parts not stored yet.
    const done = new Set((t.parts ?? []).map((p) => p.partNumber));
    const total = Math.ceil(blob.size / t.partSize!);
    const missing = Array.from({ length: total }, (_, i) => i + 1).filter((n) => !done.has(n));
    const fresh = await ctx.http.json<{ parts: Part[] }>('POST', '/api/storage/multipart/urls', {
      workspace_id: ctx.workspaceId,
      hash: t.hash,
      size_bytes: blob.size,
      part_size_bytes: t.partSize,
      upload_id: t.uploadId,
      part_numbers: missing,
    });
    parts = fresh.parts;
  }
  const finished = [...(t.parts ?? [])];
  for (const part of parts.sort((a, b) => a.partNumber - b.partNumber)) {
    if (finished.some((p) => p.partNumber === part.partNumber)) continue;
    const start = (part.partNumber - 1) * t.partSize!;
    const res = await ctx.http.fetch(part.url, { method: 'PUT', body: blob.slice(start, start + part.size) }, { timeoutMs: 10 * 60_000 });
    if (!res.ok) throw await errorFrom(res);
    const { etag } = (await res.json()) as { etag: string };
    finished.push({ partNumber: part.partNumber, etag });
    await ctx.update({
      parts: [...finished],
      bytes_done: Math.min(
        blob.size,
        finished.reduce((sum, p) => sum + Math.min(t.partSize!, blob.size - (p.partNumber - 1) * t.partSize!), 0),
      ),
    });
  }
  try {
    await ctx.http.json('POST', '/api/storage/multipart/complete', {
      workspace_id: ctx.workspaceId,
      hash: t.hash,
      upload_id: t.uploadId,
      parts: finished.sort((a, b) => a.partNumber - b.partNumber),
    });
  } catch (err) {
    if (err instanceof Or3Error && !err.transient) {
      // The upload is gone or unusable (already completed by a lost answer, expired, refused):
      // start a new one next attempt; `create` then reports the blob if it is already stored.
      await ctx.update({ uploadId: undefined, parts: [], bytes_done: 0 });
      if (err.status !== 422) throw new Or3Error(503, 'multipart_restart', `The upload will start over: ${err.message}`);
    }
    throw err;
  }
  await ctx.update({ completed: true });
  return t.storageId!;
}

export async function downloadFile(ctx: TransferSteps, t: FileTransfer): Promise<void> {
  const presign = await ctx.http.json<{ url: string; method: string; headers: Record<string, string> }>('POST', '/api/storage/presign-download', {
    workspace_id: ctx.workspaceId,
    hash: t.hash,
  });
  const res = await ctx.http.fetch(presign.url, { method: presign.method, headers: presign.headers }, { timeoutMs: 10 * 60_000 });
  if (!res.ok) throw await errorFrom(res);
  const total = Number(res.headers.get('content-length') ?? t.bytes_total) || t.bytes_total;
  if (total !== t.bytes_total) await ctx.update({ bytes_total: total });
  const chunks: Uint8Array[] = [];
  let done = 0;
  let reported = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) break;
    chunks.push(chunk.value);
    done += chunk.value.byteLength;
    // Progress at most every 256 KiB, so a fast download does not flood IndexedDB.
    if (done - reported >= 256 * 1024) {
      reported = done;
      await ctx.update({ bytes_done: done });
    }
  }
  const blob = new Blob(chunks as BlobPart[], { type: res.headers.get('content-type') ?? t.mime_type });
  if (t.hash.startsWith('sha256:') && (await hashBlob(blob)) !== t.hash) {
    throw new Or3Error(502, 'integrity', 'The downloaded bytes do not match the file hash');
  }
  await ctx.db.file_blobs.put({ hash: t.hash, blob, cachedAt: Date.now() });
}
