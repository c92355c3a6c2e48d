/** Storage test helpers: hashing, presign/upload/commit through the real Worker. */
import { env, exports } from 'cloudflare:workers';
import { runInDurableObject } from 'cloudflare:test';
import { call } from '../auth/helpers';

export async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return 'sha256:' + [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export const bytesOf = (text: string) => new TextEncoder().encode(text);

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

/** Fetches an absolute URL the Worker handed out, through the Worker. */
export const fetchUrl = (url: string, init?: RequestInit) => exports.default.fetch(new Request(url, init));

type Auth = { headers: Record<string, string> };

export async function presignUpload(user: Auth, workspaceId: string, bytes: Uint8Array, mime = 'image/png', extra: Record<string, unknown> = {}) {
  const hash = await sha256(bytes);
  const res = await call('POST', '/api/storage/presign-upload', user.headers, {
    workspace_id: workspaceId,
    hash,
    mime_type: mime,
    size_bytes: bytes.byteLength,
    ...extra,
  });
  return { res, hash, body: res.status === 200 ? await res.clone().json<any>() : null };
}

export function put(url: string, bytes: Uint8Array, headers: Record<string, string> = {}) {
  return fetchUrl(url, { method: 'PUT', headers: { 'content-length': String(bytes.byteLength), ...headers }, body: bytes });
}

export function commit(user: Auth, workspaceId: string, hash: string, storageId: string, size: number, extra: Record<string, unknown> = {}) {
  return call('POST', '/api/storage/commit', user.headers, {
    workspace_id: workspaceId,
    hash,
    storage_id: storageId,
    storage_provider_id: 'r2',
    mime_type: 'image/png',
    size_bytes: size,
    name: 'file.png',
    kind: 'image',
    ...extra,
  });
}

/** presign → PUT → commit, returning the hash and storage id. */
export async function store(user: Auth, workspaceId: string, bytes: Uint8Array) {
  const { hash, body } = await presignUpload(user, workspaceId, bytes);
  if (!body) throw new Error('presign failed');
  const uploaded = await put(body.url, bytes, body.headers);
  if (uploaded.status !== 200) throw new Error(`upload failed ${uploaded.status}: ${await uploaded.text()}`);
  const committed = await commit(user, workspaceId, hash, body.storageId, bytes.byteLength);
  if (committed.status !== 200) throw new Error(`commit failed ${committed.status}: ${await committed.text()}`);
  return { hash, storageId: body.storageId as string };
}

export async function downloadUrl(user: Auth, workspaceId: string, hash: string, extra: Record<string, unknown> = {}) {
  const res = await call('POST', '/api/storage/presign-download', user.headers, { workspace_id: workspaceId, hash, ...extra });
  return { res, body: res.status === 200 ? await res.clone().json<any>() : null };
}

/** An upload intent's status, read from the workspace's object. */
export const intentStatus = (workspaceId: string, id: string) =>
  runInDurableObject(
    env.WORKSPACE.getByName(workspaceId),
    (_o, state) => state.storage.sql.exec<{ status: string }>('SELECT status FROM upload_intents WHERE id = ?', id).one().status,
  );
