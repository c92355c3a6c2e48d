/**
 * Upload and download queues for file attachments, persisted in `file_transfers` so they
 * survive reloads: a transfer left `running` by a crash is queued again on open.
 *
 * Uploads: hash (sha256) → presign → PUT → commit, then the file's `file_meta` row gets its
 * storage fields (it was written at once, so the app can show the attachment offline). Files
 * above `multipartThresholdBytes` go up in parts; the etag of each finished part is saved, so
 * an interrupted upload resumes with the missing parts only. Downloads: presign → GET with
 * progress → verify the bytes against the hash → cache in `file_blobs`.
 *
 * At most `concurrency` transfers run at once. Transient failures (network, 5xx, 429, an
 * expired URL, a download of a file whose upload has not finished yet) retry with backoff up
 * to `maxAttempts`; the rest fail at once with the server's message.
 */
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from './backoff.js';
import type { FileTransfer, LocalDatabase, TransferState } from './db.js';
import type { EventSink } from './events.js';
import { hashBlob } from './hash.js';
import { errorFrom, HttpClient, Or3Error } from './http.js';

export interface TransferOptions {
  concurrency: number;
  maxAttempts: number;
  maxFileSizeBytes: number;
  multipartThresholdBytes: number;
  partSizeBytes: number;
  backoff: BackoffOptions;
  /** Pause while the page is hidden (browsers), resume when it is visible again. */
  pauseWhenHidden: boolean;
}

export const DEFAULT_TRANSFER_OPTIONS: TransferOptions = {
  concurrency: 2,
  maxAttempts: 5,
  maxFileSizeBytes: 100 * 1024 * 1024,
  multipartThresholdBytes: 16 * 1024 * 1024,
  partSizeBytes: 8 * 1024 * 1024,
  backoff: DEFAULT_BACKOFF,
  pauseWhenHidden: true,
};

export interface TransferProgress {
  id: string;
  hash: string;
  direction: 'upload' | 'download';
  state: TransferState;
  bytesDone: number;
  bytesTotal: number;
  error?: string;
}

export interface TransferEvents extends Record<string, unknown> {
  transfer: TransferProgress;
}

export interface UploadInput {
  name: string;
  kind?: 'image' | 'pdf';
  mimeType?: string;
}

const kindOf = (mime: string): 'image' | 'pdf' => (mime === 'application/pdf' ? 'pdf' : 'image');

export class TransferQueue {
  #running = new Set<string>();
  #paused = false;
  #closed = false;
  #waiters = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();
  /** One timer, armed for the earliest transfer waiting out its backoff (`notBefore`). */
  #wake: { at: number; timer: ReturnType<typeof setTimeout> } | null = null;
  #detachVisibility: () => void = () => {};

  constructor(
    private readonly db: LocalDatabase,
    private readonly http: HttpClient,
    private readonly workspaceId: string,
    private readonly events: EventSink<TransferEvents>,
    private readonly options: TransferOptions,
  ) {}

  async start() {
    // Crash recovery: whatever was running when the page died runs again.
    await this.db.file_transfers.where('state').equals('running').modify({ state: 'queued' });
    if (this.options.pauseWhenHidden) this.#detachVisibility = onVisibility((visible) => (visible ? this.resume() : this.pause()));
    this.#kick();
  }

  close() {
    this.#closed = true;
    this.#detachVisibility();
    if (this.#wake) clearTimeout(this.#wake.timer);
    this.#wake = null;
    for (const [, list] of this.#waiters) for (const w of list) w.reject(new Or3Error(0, 'stopped', 'The workspace was closed'));
    this.#waiters.clear();
  }

  pause() {
    this.#paused = true;
  }

  resume() {
    this.#paused = false;
    this.#kick();
  }

  /**
   * Stores the file locally, writes its `file_meta` row (synced) and queues the upload.
   * Resolves with the hash as soon as it is queued; `waitFor(transferId)` waits for the upload.
   */
  async upload(blob: Blob, input: UploadInput): Promise<{ hash: string; transferId: string }> {
    if (blob.size > this.options.maxFileSizeBytes) {
      throw new Or3Error(413, 'file_too_large', `The file is ${blob.size} bytes; the limit is ${this.options.maxFileSizeBytes}`);
    }
    const mime = input.mimeType ?? (blob.type || 'application/octet-stream');
    const hash = await hashBlob(blob);
    const now = Math.floor(Date.now() / 1000);
    const transfer: FileTransfer = {
      id: crypto.randomUUID(),
      hash,
      direction: 'upload',
      state: 'queued',
      bytes_done: 0,
      bytes_total: blob.size,
      attempts: 0,
      mime_type: mime,
      name: input.name,
      kind: input.kind ?? kindOf(mime),
      updatedAt: Date.now(),
    };
    await this.db.transaction('rw', ['file_blobs', 'file_meta', 'file_transfers'], async () => {
      await this.db.file_blobs.put({ hash, blob, cachedAt: Date.now() });
      const existing = await this.db.file_meta.get(hash);
      if (!existing || existing.deleted) {
        await this.db.file_meta.put({
          hash,
          name: input.name,
          kind: transfer.kind,
          mime_type: mime,
          size_bytes: blob.size,
          deleted: false,
          created_at: now,
          updated_at: now,
          clock: (existing?.clock as number | undefined) ?? 0,
        });
      }
      await this.db.file_transfers.put(transfer);
    });
    this.#emit(transfer);
    this.#kick();
    return { hash, transferId: transfer.id };
  }

  /** The file's bytes: from the local cache, or downloaded (and cached) now. */
  async get(hash: string): Promise<Blob> {
    const cached = await this.db.file_blobs.get(hash);
    if (cached) return cached.blob;
    const id = `download:${hash}`;
    const existing = await this.db.file_transfers.get(id);
    if (!existing || existing.state === 'failed' || existing.state === 'done') {
      const meta = await this.db.file_meta.get(hash);
      await this.db.file_transfers.put({
        id,
        hash,
        direction: 'download',
        state: 'queued',
        bytes_done: 0,
        bytes_total: Number(meta?.size_bytes ?? 0),
        attempts: 0,
        mime_type: String(meta?.mime_type ?? ''),
        name: String(meta?.name ?? ''),
        kind: (meta?.kind as 'image' | 'pdf') ?? 'image',
        updatedAt: Date.now(),
      });
    }
    const done = this.waitFor(id);
    this.#kick();
    await done;
    const blob = await this.db.file_blobs.get(hash);
    if (!blob) throw new Or3Error(0, 'missing', 'The download finished but the file is not cached');
    return blob.blob;
  }

  /** Resolves when the transfer is done; rejects when it failed for good. */
  async waitFor(id: string): Promise<void> {
    const t = await this.db.file_transfers.get(id);
    if (t?.state === 'done') return;
    if (t?.state === 'failed') throw new Or3Error(0, 'transfer_failed', t.error ?? 'The transfer failed');
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(id) ?? [];
      list.push({ resolve, reject });
      this.#waiters.set(id, list);
    });
  }

  list(): Promise<FileTransfer[]> {
    return this.db.file_transfers.toArray();
  }

  /** Queues failed transfers again (e.g. from a "retry" button). */
  async retryFailed(): Promise<void> {
    await this.db.file_transfers.where('state').equals('failed').modify({ state: 'queued', attempts: 0 });
    this.#kick();
  }

  #emit(t: FileTransfer) {
    this.events.emit('transfer', {
      id: t.id,
      hash: t.hash,
      direction: t.direction,
      state: t.state,
      bytesDone: t.bytes_done,
      bytesTotal: t.bytes_total,
      ...(t.error ? { error: t.error } : {}),
    });
  }

  async #update(t: FileTransfer, changes: Partial<FileTransfer>) {
    Object.assign(t, changes, { updatedAt: Date.now() });
    await this.db.file_transfers.put(t);
    this.#emit(t);
  }

  #kick() {
    if (this.#paused || this.#closed) return;
    void (async () => {
      if (this.#running.size >= this.options.concurrency) return;
      const now = Date.now();
      // Filtered after the await, with nothing awaited until the loop ends: overlapping kicks
      // cannot both start one transfer.
      const queued = (await this.db.file_transfers.where('state').equals('queued').sortBy('updatedAt')).filter((t) => !this.#running.has(t.id));
      for (const t of queued) {
        if (this.#running.size >= this.options.concurrency || this.#paused || this.#closed) break;
        if ((t.notBefore ?? 0) > now) continue;
        this.#running.add(t.id);
        void this.#run(t).finally(() => {
          this.#running.delete(t.id);
          this.#kick();
        });
      }
      const earliest = queued.reduce((min, t) => ((t.notBefore ?? 0) > now ? Math.min(min, t.notBefore!) : min), Infinity);
      if (earliest !== Infinity) this.#wakeAt(earliest);
    })();
  }

  /**
   * Kicks again once `at` has passed. The delay is measured from now and rounded up, with a
   * margin: timers may fire a little before `Date.now()` reaches the target (Node truncates
   * fractional delays and measures from the event loop's cached time), and a kick that came too
   * early would find nothing runnable and leave the transfer waiting forever.
   */
  #wakeAt(at: number) {
    if (this.#closed || (this.#wake && this.#wake.at <= at)) return;
    if (this.#wake) clearTimeout(this.#wake.timer);
    // Capped: a delay above 2^31-1 ms overflows and fires at once, again and again.
    const delay = Math.min(2 ** 31 - 1, Math.max(0, Math.ceil(at - Date.now())) + 5);
    const timer = setTimeout(() => {
      this.#wake = null;
      this.#kick();
    }, delay);
    this.#wake = { at, timer };
  }

  async #run(t: FileTransfer) {
    await this.#update(t, { state: 'running', attempts: t.attempts + 1 });
    try {
      if (t.direction === 'upload') await this.#upload(t);
      else await this.#download(t);
      await this.#update(t, { state: 'done', bytes_done: t.bytes_total });
      for (const w of this.#waiters.get(t.id) ?? []) w.resolve();
      this.#waiters.delete(t.id);
    } catch (err) {
      if (this.#closed) return;
      const error = err instanceof Or3Error ? err : new Or3Error(0, 'client_error', err instanceof Error ? err.message : String(err));
      // Worth retrying besides transient failures: an expired URL (410), blob GC in progress
      // (409 gc_in_progress), and a download of a file whose upload has not finished yet (404).
      const retryable = error.transient || error.status === 410 || error.code === 'gc_in_progress' || (t.direction === 'download' && error.status === 404);
      if (retryable && t.attempts < this.options.maxAttempts) {
        const delay = backoffDelay(t.attempts, this.options.backoff, error.retryAfterMs);
        // The kick after this run ends arms the wake timer for `notBefore`.
        await this.#update(t, { state: 'queued', error: error.message, notBefore: Date.now() + delay });
        return;
      }
      await this.#update(t, { state: 'failed', error: error.message });
      for (const w of this.#waiters.get(t.id) ?? []) w.reject(error);
      this.#waiters.delete(t.id);
    }
  }

  // -- upload -----------------------------------------------------------------------------------

  async #upload(t: FileTransfer) {
    const cached = await this.db.file_blobs.get(t.hash);
    if (!cached) throw new Or3Error(400, 'missing_local_file', 'The file to upload is no longer stored on this device');
    const blob = cached.blob;
    let storageId: string;
    let providerId = 'r2';
    if (blob.size > this.options.multipartThresholdBytes) {
      storageId = await this.#multipart(t, blob);
    } else {
      const presign = await this.http.json<{
        url: string;
        method: string;
        headers: Record<string, string>;
        storageId: string;
        storageProviderId?: string;
        alreadyPresent?: boolean;
      }>('POST', '/api/storage/presign-upload', {
        workspace_id: this.workspaceId,
        hash: t.hash,
        mime_type: t.mime_type,
        size_bytes: blob.size,
      });
      storageId = presign.storageId;
      providerId = presign.storageProviderId ?? providerId;
      if (!presign.alreadyPresent) {
        const res = await this.http.fetch(presign.url, { method: presign.method, headers: presign.headers, body: blob }, { timeoutMs: 10 * 60_000 });
        if (!res.ok) throw await errorFrom(res);
        await this.#update(t, { bytes_done: blob.size });
      }
    }
    await this.http.json('POST', '/api/storage/commit', {
      workspace_id: this.workspaceId,
      hash: t.hash,
      storage_id: storageId,
      storage_provider_id: providerId,
      mime_type: t.mime_type,
      size_bytes: blob.size,
      name: t.name,
      kind: t.kind,
    });
    // The row other devices download by: now it names where the bytes are.
    const meta = await this.db.file_meta.get(t.hash);
    if (meta && meta.storage_id !== storageId) {
      await this.db.file_meta.put({ ...meta, storage_id: storageId, storage_provider_id: providerId, updated_at: Math.floor(Date.now() / 1000) });
    }
  }

  async #multipart(t: FileTransfer, blob: Blob): Promise<string> {
    type Part = { partNumber: number; size: number; url: string };
    if (t.completed && t.storageId) return t.storageId; // only the commit is left
    let parts: Part[];
    if (!t.uploadId) {
      const created = await this.http.json<{ uploadId?: string; storageId: string; partSize: number; parts: Part[]; alreadyPresent?: boolean }>(
        'POST',
        '/api/storage/multipart/create',
        {
          workspace_id: this.workspaceId,
          hash: t.hash,
          mime_type: t.mime_type,
          size_bytes: blob.size,
          part_size_bytes: this.options.partSizeBytes,
        },
      );
      if (created.alreadyPresent || !created.uploadId) {
        // The workspace already has these bytes: nothing to send.
        await this.#update(t, { storageId: created.storageId, completed: true, bytes_done: blob.size });
        return created.storageId;
      }
      await this.#update(t, { uploadId: created.uploadId, storageId: created.storageId, partSize: created.partSize, parts: [] });
      parts = created.parts;
    } else {
      // Resuming: fresh URLs for the parts not stored yet.
      const done = new Set((t.parts ?? []).map((p) => p.partNumber));
      const total = Math.ceil(blob.size / t.partSize!);
      const missing = Array.from({ length: total }, (_, i) => i + 1).filter((n) => !done.has(n));
      const fresh = await this.http.json<{ parts: Part[] }>('POST', '/api/storage/multipart/urls', {
        workspace_id: this.workspaceId,
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
      const res = await this.http.fetch(part.url, { method: 'PUT', body: blob.slice(start, start + part.size) }, { timeoutMs: 10 * 60_000 });
      if (!res.ok) throw await errorFrom(res);
      const { etag } = (await res.json()) as { etag: string };
      finished.push({ partNumber: part.partNumber, etag });
      await this.#update(t, {
        parts: [...finished],
        bytes_done: Math.min(
          blob.size,
          finished.reduce((sum, p) => sum + Math.min(t.partSize!, blob.size - (p.partNumber - 1) * t.partSize!), 0),
        ),
      });
    }
    try {
      await this.http.json('POST', '/api/storage/multipart/complete', {
        workspace_id: this.workspaceId,
        hash: t.hash,
        upload_id: t.uploadId,
        parts: finished.sort((a, b) => a.partNumber - b.partNumber),
      });
    } catch (err) {
      if (err instanceof Or3Error && !err.transient) {
        // The upload is gone or unusable (already completed by a lost answer, expired, refused):
        // start a new one next attempt; `create` then reports the blob if it is already stored.
        await this.#update(t, { uploadId: undefined, parts: [], bytes_done: 0 });
        if (err.status !== 422) throw new Or3Error(503, 'multipart_restart', `The upload will start over: ${err.message}`);
      }
      throw err;
    }
    await this.#update(t, { completed: true });
    return t.storageId!;
  }

  // -- download ---------------------------------------------------------------------------------

  async #download(t: FileTransfer) {
    const presign = await this.http.json<{ url: string; method: string; headers: Record<string, string> }>('POST', '/api/storage/presign-download', {
      workspace_id: this.workspaceId,
      hash: t.hash,
    });
    const res = await this.http.fetch(presign.url, { method: presign.method, headers: presign.headers }, { timeoutMs: 10 * 60_000 });
    if (!res.ok) throw await errorFrom(res);
    const total = Number(res.headers.get('content-length') ?? t.bytes_total) || t.bytes_total;
    if (total !== t.bytes_total) await this.#update(t, { bytes_total: total });
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
        await this.#update(t, { bytes_done: done });
      }
    }
    const blob = new Blob(chunks as BlobPart[], { type: res.headers.get('content-type') ?? t.mime_type });
    if (t.hash.startsWith('sha256:') && (await hashBlob(blob)) !== t.hash) {
      throw new Or3Error(502, 'integrity', 'The downloaded bytes do not match the file hash');
    }
    await this.db.file_blobs.put({ hash: t.hash, blob, cachedAt: Date.now() });
  }
}

function onVisibility(callback: (visible: boolean) => void): () => void {
  const doc = (
    globalThis as {
      document?: { visibilityState?: string; addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
    }
  ).document;
  if (!doc?.addEventListener) return () => {};
  const listener = () => callback(doc.visibilityState !== 'hidden');
  doc.addEventListener('visibilitychange', listener);
  return () => doc.removeEventListener?.('visibilitychange', listener);
}
