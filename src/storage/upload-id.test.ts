import { describe, expect, it } from 'vitest';
import { urlKeys } from './signing';
import { openUploadId, sealUploadId, UPLOAD_ID_LIFETIME_MS } from './upload-id';

const scope = { workspaceId: 'w', key: 'ws/w/sha256/aa', hash: 'sha256:aa' };
const declared = { r2UploadId: 'r2.id/with+odd=chars', sizeBytes: 1_048_576, partSizeBytes: 10_485_760, mimeType: 'application/vnd.ms-excel' };

describe('multipart upload ids', () => {
  it('round-trips what was declared at create, whatever characters R2 uses', async () => {
    const keys = await urlKeys('x'.repeat(32));
    const id = await sealUploadId(keys, scope, declared, 1000);
    expect(await openUploadId(keys, scope, id, 2000)).toEqual({ ...declared, expires: 1000 + UPLOAD_ID_LIFETIME_MS });
  });

  it('refuses an id edited to declare another size, part size or MIME type, or presented for another blob', async () => {
    const keys = await urlKeys('x'.repeat(32));
    const id = await sealUploadId(keys, scope, declared);
    const parts = id.split('.');
    const edits = [
      [parts[0], '2097152', ...parts.slice(2)],
      [...parts.slice(0, 2), '5242880', ...parts.slice(3)],
      [...parts.slice(0, 6), btoa('text/html').replace(/=+$/, ''), ...parts.slice(7)],
    ].map((p) => p.join('.'));
    for (const edited of [...edits, id.replace('r2.id', 'r3.id'), 'not-an-id']) expect(await openUploadId(keys, scope, edited), edited).toBe('invalid');
    expect(await openUploadId(keys, { ...scope, workspaceId: 'v' }, id)).toBe('invalid');
    expect(await openUploadId(keys, { ...scope, hash: 'sha256:ab' }, id)).toBe('invalid');
    expect(await openUploadId(await urlKeys('y'.repeat(32)), scope, id)).toBe('invalid');
  });

  it('expires with R2 unfinished uploads, and still opens with the previous key during rotation', async () => {
    const old = await urlKeys('x'.repeat(32));
    const id = await sealUploadId(old, scope, declared, 0);
    expect(await openUploadId(old, scope, id, UPLOAD_ID_LIFETIME_MS + 1)).toBe('expired');
    const fresh = await sealUploadId(old, scope, declared);
    expect(await openUploadId(await urlKeys('y'.repeat(32), 'x'.repeat(32)), scope, fresh)).toMatchObject(declared);
  });
});
