import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../../src/config';
import type { Bindings } from '../../src/env';
import { requireHash } from '../../protocol/hashes';
import { r2S3Provider } from '../../src/storage/providers';
import { apiWithEnv } from '../helpers';
import { syncUser } from '../sync/helpers';
import { bytesOf, sha256 } from './helpers';

const S3_VARS = {
  R2_ACCOUNT_ID: 'acct123',
  R2_ACCESS_KEY_ID: 'AKIDEXAMPLE',
  R2_SECRET_ACCESS_KEY: 'secret-access-key-example',
  R2_BUCKET_NAME: 'or3-edge-blobs',
};

function s3Config(): Config {
  const result = parseConfig({ ...(env as unknown as Bindings), ...S3_VARS });
  if (!result.ok) throw new Error('config');
  return result.config;
}

describe('direct R2 (S3) presigned URLs', () => {
  it('signs a PUT to the account endpoint with length and type as signed headers', async () => {
    const hash = requireHash('sha256:' + 'e'.repeat(64));
    const input = {
      workspaceId: 'w1',
      hash,
      key: `ws/w1/sha256/${hash.hex}`,
      mimeType: 'image/png',
      sizeBytes: 1234,
      expiresAt: Date.now() + 600_000,
      disposition: 'inline' as const,
      origin: 'https://or3.test',
      config: s3Config(),
    };
    const provider = r2S3Provider();
    const signed = await provider.presignUpload(input);
    const url = new URL(signed.url);
    expect(url.host).toBe('acct123.r2.cloudflarestorage.com');
    expect(url.pathname).toBe(`/or3-edge-blobs/ws/w1/sha256/${hash.hex}`);
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(/^AKIDEXAMPLE\/\d{8}\/auto\/s3\/aws4_request$/);
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-type;host');
    expect(Number(url.searchParams.get('X-Amz-Expires'))).toBeGreaterThan(590);
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    // The length is part of what is signed.
    const other = new URL((await provider.presignUpload({ ...input, sizeBytes: 1235 })).url);
    expect(other.searchParams.get('X-Amz-Signature')).not.toBe(url.searchParams.get('X-Amz-Signature'));
  });

  it('presign-upload hands out S3 URLs when credentials are configured', async () => {
    const u = await syncUser();
    const bytes = bytesOf('direct upload');
    const res = await apiWithEnv(S3_VARS, '/api/storage/presign-upload', {
      method: 'POST',
      headers: { ...u.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ workspace_id: u.workspaceId, hash: await sha256(bytes), mime_type: 'image/png', size_bytes: bytes.byteLength }),
    });
    const body = await res.json<any>();
    expect(body.storageProviderId).toBe('r2-s3');
    expect(new URL(body.url).host).toBe('acct123.r2.cloudflarestorage.com');
  });

  it('commit re-hashes objects that bypassed the Worker: wrong bytes are removed with 422, right ones count', async () => {
    const u = await syncUser();
    const commitS3 = (hash: string, size: number) =>
      apiWithEnv(S3_VARS, '/api/storage/commit', {
        method: 'POST',
        headers: { ...u.headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          workspace_id: u.workspaceId,
          hash,
          storage_id: `ws/${u.workspaceId}/sha256/${hash.slice(7)}`,
          storage_provider_id: 'r2-s3',
          mime_type: 'image/png',
          size_bytes: size,
          name: 'f',
          kind: 'image',
        }),
      });
    const good = bytesOf('bytes written straight to R2');
    const goodHash = await sha256(good);
    await env.BLOBS.put(`ws/${u.workspaceId}/sha256/${goodHash.slice(7)}`, good);
    expect((await commitS3(goodHash, good.byteLength)).status).toBe(200);

    const claimed = await sha256(bytesOf('what the client claimed'));
    const key = `ws/${u.workspaceId}/sha256/${claimed.slice(7)}`;
    await env.BLOBS.put(key, bytesOf('something else entirely'));
    const res = await commitS3(claimed, 'something else entirely'.length);
    expect(res.status).toBe(422);
    expect(await env.BLOBS.head(key)).toBeNull();
  });
});
