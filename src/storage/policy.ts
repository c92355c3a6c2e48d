/**
 * What the storage routes are built with, injected through `createApp` (docs/storage.md
 * "Hooks"): the hooks (upload policies, URL filters, observers) and the provider choice for
 * upload URLs. Plus the upload policy check presign and multipart share.
 */
import type { Context } from 'hono';
import { audit } from '../audit/emit';
import type { Config } from '../config';
import type { AppEnv } from '../env';
import { conflict, fromFailure } from '../errors';
import type { BlobState } from '../workspace-db/blobs';
import type { StorageCaller } from '../workspace-contract';
import { shardAnswer } from '../workspaces/authorize';
import type { ParsedHash } from '../../protocol/hashes';
import { defaultStorageHooks, type StorageHooks } from './hooks';
import { r2Provider, r2S3Provider, type ObjectStorageProvider } from './providers';

export interface StorageDeps {
  hooks: StorageHooks;
  /** The provider that signs upload URLs; downloads are always served by the Worker (`r2`). */
  uploadProvider: (config: Config) => ObjectStorageProvider;
}

/** Direct-to-R2 S3 URLs when R2 API credentials are configured, else the Worker's own signed URLs. */
export const defaultUploadProvider = (config: Config): ObjectStorageProvider => (config.storage.s3 ? r2S3Provider() : r2Provider);

export const defaultStorageDeps = (): StorageDeps => ({ hooks: defaultStorageHooks(), uploadProvider: defaultUploadProvider });

type PolicyInput = { workspaceId: string; hash: ParsedHash; mimeType: string; sizeBytes: number; multipart?: boolean };

/** Runs the hooks' upload policies with the bytes the workspace already holds; a refusal is audited and rethrown. */
async function runPolicies(
  c: Context<AppEnv>,
  hooks: StorageHooks,
  input: PolicyInput & { userId: string },
  usedBytes: number,
  anyMimeType = false,
): Promise<void> {
  try {
    await hooks.checkUpload({
      workspaceId: input.workspaceId,
      userId: input.userId,
      hash: input.hash.canonical,
      mimeType: input.mimeType,
      sizeBytes: input.sizeBytes,
      usedBytes,
      config: c.get('config'),
      anyMimeType,
    });
  } catch (err) {
    audit(c, 'storage.upload.rejected', {
      actorId: input.userId,
      workspaceId: input.workspaceId,
      reason: err instanceof Error ? err.message : 'rejected',
      ...(input.multipart ? { multipart: true } : {}),
    });
    throw err;
  }
}

/**
 * The upload policy for `sizeBytes` of this blob (multipart create, urls, complete): one call to
 * the workspace's object, which authorizes the caller, checks the workspace's storage quota (the
 * step's one quota check: the object holds the usage and reads the quota from its own
 * configuration) and answers the blob's state and the committed bytes (and arms its GC alarm:
 * uploads that are never committed must be collected); then the hooks' policies (size limit,
 * MIME allow-list; docs/storage.md), which see the committed bytes. Re-uploading a committed
 * blob costs no quota. Refusals are audited. Returns the caller's user id and the blob's state.
 */
export async function checkUploadPolicy(
  c: Context<AppEnv>,
  hooks: StorageHooks,
  caller: StorageCaller,
  input: PolicyInput,
): Promise<{ userId: string; state: BlobState }> {
  const ws = c.env.WORKSPACE.getByName(input.workspaceId);
  const prepared = await ws.prepareUpload(caller, { hash: input.hash.canonical, sizeBytes: input.sizeBytes });
  if (!prepared.ok && prepared.code === 'quota_exceeded') {
    const userId = 'admin' in caller ? caller.admin : caller.credential.kind === 'federated' ? null : caller.credential.userId;
    audit(c, 'storage.upload.rejected', { actorId: userId, workspaceId: input.workspaceId, reason: prepared.message, multipart: true });
  }
  const reply = shardAnswer(c, caller, prepared);
  const { userId, state, usedBytes } = reply;
  if (state.gcPending) throw conflict('This blob is being deleted by GC; try again shortly', 'gc_in_progress');
  await runPolicies(c, hooks, { ...input, userId }, state.committed ? usedBytes - input.sizeBytes : usedBytes);
  return { userId, state };
}

/**
 * Presign-upload's policy with an upload intent (docs/api.md "Upload intents"): one call to the
 * workspace's object authorizes the caller and reserves the bytes against the quota atomically
 * (so concurrent uploads cannot together pass it: presign's one quota check) and returns the
 * blob's state; then the hooks' policies (size limit, MIME allow-list) run, seeing the committed
 * plus reserved bytes. A policy's refusal cancels the intent
 * (its bytes are free at once: the one second call, on a refusal only) and is audited. Returns
 * the caller's user id, the blob's state and the intent's id.
 */
export async function reserveUploadPolicy(
  c: Context<AppEnv>,
  hooks: StorageHooks,
  caller: StorageCaller,
  input: PolicyInput & { expiresAt: number; strict: boolean; anyMimeType: boolean },
): Promise<{ userId: string; state: BlobState; intentId: string }> {
  const ws = c.env.WORKSPACE.getByName(input.workspaceId);
  const reply = shardAnswer(
    c,
    caller,
    await ws.reserveUpload(caller, {
      hash: input.hash.canonical,
      mimeType: input.mimeType,
      sizeBytes: input.sizeBytes,
      expiresAt: input.expiresAt,
      strict: input.strict,
    }),
  );
  const { userId } = reply;
  if (!reply.intent.ok) {
    const err = fromFailure(reply.intent);
    audit(c, 'storage.upload.rejected', { actorId: userId, workspaceId: input.workspaceId, reason: err.message });
    throw err;
  }
  const { intentId, reservedBytes } = reply.intent;
  // Policies see what is stored and reserved by other uploads (a committed blob costs nothing again): a deployment's own policy may judge usage.
  const used = (reply.state.committed ? reply.usedBytes - input.sizeBytes : reply.usedBytes) + reservedBytes;
  try {
    await runPolicies(c, hooks, { ...input, userId }, used, input.anyMimeType);
  } catch (err) {
    await ws.cancelIntent(intentId);
    throw err;
  }
  return { userId, state: reply.state, intentId };
}
