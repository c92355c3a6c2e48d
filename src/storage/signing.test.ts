import { describe, expect, it } from 'vitest';
import { clampExpiry, sign, urlKeys, verify, URL_LIMITS, type SignedFields } from './signing';

const fields: SignedFields = {
  method: 'PUT',
  workspaceId: 'w',
  key: 'ws/w/sha256/aa',
  expires: Date.now() + 60_000,
  size: 10,
  hash: 'sha256:aa',
  disposition: 'inline',
  contentType: 'image/png',
};

describe('URL signing', () => {
  it('verifies its own signature and refuses any changed field', async () => {
    const keys = await urlKeys('x'.repeat(32));
    const { kid, sig } = await sign(keys, fields);
    expect(await verify(keys, fields, kid, sig)).toBe('ok');
    for (const change of [
      { method: 'GET' },
      { workspaceId: 'v' },
      { key: 'ws/w/sha256/ab' },
      { expires: fields.expires + 1 },
      { size: 11 },
      { hash: 'sha256:ab' },
      { disposition: 'attachment' },
      { contentType: 'text/html' },
    ] as Partial<SignedFields>[]) {
      expect(await verify(keys, { ...fields, ...change }, kid, sig), JSON.stringify(change)).toBe('invalid');
    }
    expect(await verify(keys, fields, kid, sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A'))).toBe('invalid');
    expect(await verify(keys, fields, 'unknown', sig)).toBe('invalid');
  });

  it('says expired only for a genuine signature', async () => {
    const keys = await urlKeys('x'.repeat(32));
    const old = { ...fields, expires: Date.now() - 1 };
    const { kid, sig } = await sign(keys, old);
    expect(await verify(keys, old, kid, sig)).toBe('expired');
  });

  it('accepts the previous key during rotation and refuses it once retired', async () => {
    const oldKeys = await urlKeys('old'.repeat(11));
    const { kid, sig } = await sign(oldKeys, fields);
    expect(await verify(await urlKeys('new'.repeat(11), 'old'.repeat(11)), fields, kid, sig)).toBe('ok');
    expect(await verify(await urlKeys('new'.repeat(11)), fields, kid, sig)).toBe('invalid');
  });

  it('clamps lifetimes: uploads ≤ 15 min, downloads ≤ 1 h, at least 1 s', () => {
    const now = 1_000_000;
    expect(clampExpiry('PUT', 24 * 3600_000, now)).toBe(now + URL_LIMITS.uploadMaxMs);
    expect(clampExpiry('GET', 24 * 3600_000, now)).toBe(now + URL_LIMITS.downloadMaxMs);
    expect(clampExpiry('GET', 1, now)).toBe(now + 1000);
    expect(clampExpiry('PUT', undefined, now)).toBe(now + URL_LIMITS.defaultMs);
  });
});
