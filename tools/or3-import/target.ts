/**
 * The deployment we move into, through its public API only: sign-in as a deployment admin
 * (bearer tokens, refreshed before they expire), `POST /api/admin/import`, and the storage
 * routes' signed-URL upload (presign → PUT → commit) with `x-or3-admin-intent: admin`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';

export class ApiFailure extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Target {
  #access = '';
  #refresh = '';
  #expiresAt = 0;
  userId = '';
  email = '';

  readonly baseUrl: string;
  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  async signIn(email: string, password: string) {
    const res = await fetch(new URL('/api/basic-auth/sign-in', this.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer' },
      body: JSON.stringify({ email, password }),
    });
    const body = await this.#json(res, 'sign-in');
    this.#take(body);
    const session = await this.request<{ session: { user: { id: string; email?: string }; deploymentAdmin?: boolean } | null }>('GET', '/api/auth/session');
    if (!session.session?.deploymentAdmin) throw new Error(`${email} is not a deployment admin of ${this.baseUrl}`);
    this.userId = session.session.user.id;
    this.email = (session.session.user.email ?? email).trim().toLowerCase();
  }

  #take(body: { accessToken: string; refreshToken: string; expiresAt: string }) {
    this.#access = body.accessToken;
    this.#refresh = body.refreshToken;
    this.#expiresAt = Date.parse(body.expiresAt);
  }

  async #auth(): Promise<Record<string, string>> {
    if (Date.now() > this.#expiresAt - 60_000) {
      const res = await fetch(new URL('/api/basic-auth/refresh', this.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-or3-token-transport': 'bearer' },
        body: JSON.stringify({ refreshToken: this.#refresh }),
      });
      this.#take(await this.#json(res, 'refresh'));
    }
    return { authorization: `Bearer ${this.#access}`, 'x-or3-admin-intent': 'admin' };
  }

  async #json<T = any>(res: Response, what: string): Promise<T> {
    const text = await res.text();
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    if (!res.ok) throw new ApiFailure(res.status, body?.error ?? 'http_error', `${what}: ${res.status} ${body?.message ?? text.slice(0, 200)}`);
    return body as T;
  }

  async request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = await this.#auth();
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(new URL(path, this.baseUrl), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return this.#json<T>(res, `${method} ${path}`);
  }

  /** POSTs a JSONL file to the import route, streamed with its length; `query` adds e.g. `linkExisting`. */
  async importFile(path: string, dryRun: boolean, query: Record<string, string> = {}): Promise<any> {
    const { size } = await stat(path);
    const params = new URLSearchParams({ ...(dryRun ? { dryRun: 'true' } : {}), ...query }).toString();
    // The part's hash names its staged copy on the server: a rerun after a kill replaces what the
    // killed run left staged instead of adding another (docs/admin.md "Import").
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    const res = await fetch(new URL(`/api/admin/import${params ? `?${params}` : ''}`, this.baseUrl), {
      method: 'POST',
      headers: {
        ...(await this.#auth()),
        'content-type': 'application/x-ndjson',
        'content-length': String(size),
        'x-or3-import-id': hash.digest('hex'),
      },
      body: Readable.toWeb(createReadStream(path)) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    return this.#json(res, 'import');
  }

  /** presign → PUT → commit; 'present' when the workspace already has the blob. */
  async upload(
    workspaceId: string,
    hash: string,
    size: number,
    mimeType: string,
    meta: { name: string; kind: string; width?: number; height?: number; page_count?: number },
    open: () => ReadableStream<Uint8Array>,
  ): Promise<'uploaded' | 'present'> {
    const presign = await this.request<{
      url: string;
      method: string;
      headers: Record<string, string>;
      storageId: string;
      storageProviderId: string;
      alreadyPresent: boolean;
    }>('POST', '/api/storage/presign-upload', { workspace_id: workspaceId, hash, mime_type: mimeType, size_bytes: size });
    if (presign.alreadyPresent) return 'present';
    const put = await fetch(presign.url, {
      method: presign.method,
      headers: { ...presign.headers, 'content-length': String(size) },
      body: open(),
      duplex: 'half',
    } as RequestInit);
    await this.#json(put, 'upload');
    await this.request('POST', '/api/storage/commit', {
      workspace_id: workspaceId,
      hash,
      storage_id: presign.storageId,
      storage_provider_id: presign.storageProviderId,
      mime_type: mimeType,
      size_bytes: size,
      ...meta,
    });
    return 'uploaded';
  }
}
