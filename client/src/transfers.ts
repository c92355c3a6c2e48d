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
import { HttpClient, Or3Error } from './http.js';
import { downloadFile, uploadFile } from './transfer-steps.js';

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
      const steps = {
        db: this.db,
        http: this.http,
        workspaceId: this.workspaceId,
        options: this.options,
        update: (c: Partial<FileTransfer>) => this.#update(t, c),
      };
      if (t.direction === 'upload') await uploadFile(steps, t);
      else await downloadFile(steps, t);
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
