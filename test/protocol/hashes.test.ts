import { describe, expect, it } from 'vitest';
import { parseHash, requireHash } from '../../protocol/hashes';
import { blobKey } from '../../src/storage/blob-keys';

const SHA = 'a'.repeat(64);
const MD5 = 'B'.repeat(32);

describe('hashes', () => {
  it('parses the canonical sha256 form and lower-cases it', () => {
    expect(parseHash(`sha256:${SHA.toUpperCase()}`)).toEqual({ algorithm: 'sha256', hex: SHA, canonical: `sha256:${SHA}` });
  });

  it('accepts legacy md5 with and without prefix for lookups, not for uploads', () => {
    expect(parseHash(`md5:${MD5}`)?.canonical).toBe(`md5:${MD5.toLowerCase()}`);
    expect(parseHash(MD5)?.canonical).toBe(`md5:${MD5.toLowerCase()}`);
    expect(() => requireHash(`md5:${MD5}`, { uploadable: true })).toThrow('sha256');
  });

  it.each(['', 'sha256:', `sha256:${SHA}0`, `sha1:${SHA.slice(0, 40)}`, `sha256:${'g'.repeat(64)}`, SHA, `../sha256:${SHA}`, `sha256:${SHA}/../x`])(
    'rejects %j',
    (input) => {
      expect(parseHash(input)).toBeNull();
      expect(() => requireHash(input)).toThrow();
    },
  );

  it('builds keys only from the parsed hex, never the raw input', () => {
    expect(blobKey('ws-1', requireHash(`sha256:${SHA}`))).toBe(`ws/ws-1/sha256/${SHA}`);
    expect(() => blobKey('../other', requireHash(`sha256:${SHA}`))).toThrow();
  });
});
