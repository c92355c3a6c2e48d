/**
 * Server-side storage hooks, typed (from the OR3 storage design):
 *
 * - `storage.files.upload:filter:policy`: may reject an upload by throwing an ApiError (4xx);
 *   the MIME allow-list and the file size limit ship as two such policies. The workspace quota
 *   is not a hook: the workspace's object checks it once per step, atomically with the bytes it
 *   reserves or charges (docs/storage.md); policies see the bytes in use (`usedBytes`);
 * - `storage.files.url:filter:options`: may shorten a URL's expiry or change its disposition;
 *   the result is clamped, so no hook can extend a URL past the maximum.
 *
 * OR3's design also names transfer observers (`storage.files.upload|download:action:before|after`);
 * nothing subscribed to them, so they are not offered (the audit log records commits and deletes).
 */
import type { Config } from '../config';
import { payloadTooLarge, unsupportedMediaType } from '../errors';

export interface UploadPolicyContext {
  workspaceId: string;
  /** The uploader; null at commit for a federated token (its user is resolved by the object, in the commit's one RPC, after the policy ran). */
  userId: string | null;
  hash: string;
  mimeType: string;
  sizeBytes: number;
  usedBytes: number;
  config: Config;
  /** A generic file from a client declaring file_kind_capability: with OR3_STORAGE_ALLOW_ANY_FILE_TYPE, any MIME type passes. */
  anyMimeType?: boolean;
}

export interface UrlOptions {
  method: 'PUT' | 'GET';
  expiresAt: number;
  disposition: 'inline' | 'attachment';
}

export interface StorageHookMap {
  'storage.files.upload:filter:policy': (ctx: UploadPolicyContext) => void | Promise<void>;
  'storage.files.url:filter:options': (options: UrlOptions, ctx: { workspaceId: string; hash: string }) => UrlOptions | Promise<UrlOptions>;
}

export type StorageHookName = keyof StorageHookMap;

export class StorageHooks {
  readonly #handlers = new Map<StorageHookName, unknown[]>();

  /** Registers a handler; returns a function that removes it. */
  on<N extends StorageHookName>(name: N, handler: StorageHookMap[N]): () => void {
    const list = this.#handlers.get(name) ?? [];
    list.push(handler);
    this.#handlers.set(name, list);
    return () => {
      const at = list.indexOf(handler);
      if (at >= 0) list.splice(at, 1);
    };
  }

  #list<N extends StorageHookName>(name: N): StorageHookMap[N][] {
    return (this.#handlers.get(name) ?? []) as StorageHookMap[N][];
  }

  /** Runs every upload policy; the first to throw rejects the upload. */
  async checkUpload(ctx: UploadPolicyContext): Promise<void> {
    for (const policy of this.#list('storage.files.upload:filter:policy')) await policy(ctx);
  }

  /** Applies URL filters, then clamps: the expiry can only move earlier than `maxExpiresAt`. */
  async filterUrl(options: UrlOptions, ctx: { workspaceId: string; hash: string }, maxExpiresAt: number, now = Date.now()): Promise<UrlOptions> {
    let current = options;
    for (const filter of this.#list('storage.files.url:filter:options')) current = await filter({ ...current }, ctx);
    const disposition = current.disposition === 'attachment' ? 'attachment' : 'inline';
    const expiresAt = Number.isFinite(current.expiresAt) ? Math.min(Math.max(current.expiresAt, now + 1000), maxExpiresAt) : maxExpiresAt;
    return { method: options.method, expiresAt, disposition };
  }
}

/** Policy: MIME allow-list (`OR3_STORAGE_ALLOWED_MIME_TYPES`) → 415. */
export const mimePolicy: StorageHookMap['storage.files.upload:filter:policy'] = (ctx) => {
  if (ctx.anyMimeType) return;
  const mime = ctx.mimeType.split(';')[0]!.trim().toLowerCase();
  if (!ctx.config.storage.allowedMimeTypes.includes(mime))
    throw unsupportedMediaType(`MIME type ${mime} is not allowed; allowed: ${ctx.config.storage.allowedMimeTypes.join(', ')}`, 'mime_not_allowed');
};

/** Policy: file size (`OR3_MAX_CLOUD_FILE_SIZE_BYTES`) → 413. */
export const sizePolicy: StorageHookMap['storage.files.upload:filter:policy'] = (ctx) => {
  const { maxFileSizeBytes } = ctx.config.storage;
  if (ctx.sizeBytes > maxFileSizeBytes) throw payloadTooLarge(`File is larger than the ${maxFileSizeBytes}-byte limit`, 'file_too_large');
};

/** A hook set with the built-in policies registered (what `createApp` uses unless given its own). */
export function defaultStorageHooks(): StorageHooks {
  const hooks = new StorageHooks();
  hooks.on('storage.files.upload:filter:policy', mimePolicy);
  hooks.on('storage.files.upload:filter:policy', sizePolicy);
  return hooks;
}
