import { describe, expect, it } from 'vitest';
import {
  decodeBase64url,
  decodeBase64urlText,
  encodeBase64url,
  hmacSign,
  hmacVerify,
  keyring,
  randomHex,
  randomToken,
  seal,
  sha256Hex,
  timingSafeEqual,
  toHex,
  unseal,
} from './crypto';
import { childSecret, childTokenId } from './user-db/tokens';
import { sign, urlKeys, verify } from './storage/signing';
import { openUploadId, sealUploadId } from './storage/upload-id';
import { readPageToken, signPageToken } from './workspace-db/page-token';
import { readTicket } from './sync/ws-ticket';

/** Values made by the code before src/crypto.ts existed: what is already issued must keep verifying. */
const SECRET = 'test-vector-secret-0123456789abcdef0123456789';
const FUTURE = 1_900_000_000_000;
const TICKET = 'WyJ1c2VyLTEiLCJ3cy0xIiwibm9uY2UtMSIsMTkwMDAwMDAwMDAwMCwic2Vzc2lvbi0xIl0.YUxRPzGyJJDTI9DGVXELnwV2qKvqu64a0AMftDTHXAo';
const PAGE_TOKEN = 'WyJzbmFwLTEiLDQyLCJtZXNzYWdlcyIsIm0tw6kiLDE5MDAwMDAwMDAwMDBd.0eOqZ_1WnewEsXFc5rGDK3q_E8ftBAmPCwkMoQYoGqs';

describe('encodings and digests', () => {
  it('match the published SHA-256 and HMAC-SHA256 vectors', async () => {
    expect(await sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    // RFC 4231-style check value: HMAC-SHA256("key", "The quick brown fox…") = f7bc83f4…
    const mac = await hmacSign('key', 'The quick brown fox jumps over the lazy dog');
    expect(mac).toBe('97yD9DBThCSxMpjmqm-xQ-9NWaFJRhdZl0edvC0aPNg');
    expect(toHex(decodeBase64url(mac))).toBe('f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8');
  });

  it('writes base64url without padding, reads it back with or without, and refuses non-base64', () => {
    const bytes = new Uint8Array([0xfb, 0xff, 0xbf, 0x00, 0x61]);
    expect(encodeBase64url(bytes)).toBe('-_-_AGE');
    expect(decodeBase64url('-_-_AGE')).toEqual(bytes);
    expect(decodeBase64url('-_-_AGE=')).toEqual(bytes);
    expect(decodeBase64urlText(encodeBase64url('m-é 😀'))).toBe('m-é 😀');
    expect(() => decodeBase64url('not base64!')).toThrow();
  });

  it('compares in constant time, unequal lengths unequal', async () => {
    expect(timingSafeEqual('abc', 'abc')).toBe(true);
    expect(timingSafeEqual('abc', 'abd')).toBe(false);
    expect(timingSafeEqual('abc', 'abcd')).toBe(false);
    expect(await hmacVerify('key', 'data', await hmacSign('key', 'data'))).toBe(true);
    expect(await hmacVerify('key', 'data', await hmacSign('other', 'data'))).toBe(false);
  });

  it('makes random tokens of the stated size and alphabet', () => {
    expect(randomToken()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomHex()).toMatch(/^[0-9a-f]{64}$/);
    expect(randomToken()).not.toBe(randomToken());
  });
});

describe('keyrings', () => {
  it('name each key by a hash of purpose and secret, current first', async () => {
    const [current, previous] = await keyring('kid', 16, SECRET, `previous-${SECRET}`);
    // The access-token kids issued before this module.
    expect([current!.kid, previous!.kid]).toEqual(['6543838adcfc2fb7', 'cc769e3850187984']);
    expect(current!.secret).toBe(SECRET);
    expect((await keyring('url-kid', 12, SECRET))[0]!.kid).toBe('6b67c029d4c5');
  });
});

describe('sealed tokens', () => {
  it('reproduce and open a WebSocket ticket made before this module', async () => {
    const fields = ['user-1', 'ws-1', 'nonce-1', FUTURE, 'session-1'];
    expect(await seal(`ws-ticket:${SECRET}`, fields)).toBe(TICKET);
    expect(await unseal(`ws-ticket:${SECRET}`, TICKET, 3, FUTURE - 1)).toEqual({ ok: true, fields });
  });

  it('reproduce and open a snapshot page token made before this module (UTF-8 inside)', async () => {
    const fields = ['snap-1', 42, 'messages', 'm-é', FUTURE];
    expect(await seal('a'.repeat(64), fields)).toBe(PAGE_TOKEN);
    expect(await unseal('a'.repeat(64), PAGE_TOKEN, 4, FUTURE - 1)).toEqual({ ok: true, fields });
  });

  it('say expired only for a genuine token, and invalid for any change or another key', async () => {
    expect(await unseal('a'.repeat(64), PAGE_TOKEN, 4, FUTURE)).toEqual({ ok: false, reason: 'expired' });
    const [body, mac] = PAGE_TOKEN.split('.') as [string, string];
    const forged = encodeBase64url(JSON.stringify(['snap-1', 42, 'messages', 'm-é', FUTURE + 1]));
    for (const token of [`${forged}.${mac}`, `${body}.${mac.slice(0, -1)}A`, `${body}.${mac}.x`, body, '']) {
      expect(await unseal('a'.repeat(64), token, 4, 0), token).toEqual({ ok: false, reason: 'invalid' });
    }
    expect(await unseal('b'.repeat(64), PAGE_TOKEN, 4, 0)).toEqual({ ok: false, reason: 'invalid' });
  });
});

describe('formats issued before this module', () => {
  const hash = `sha256:${'ab'.repeat(32)}`;
  const key = `ws/ws-1/sha256/${'ab'.repeat(32)}`;

  it('signs a blob URL exactly as before', async () => {
    const fields = { method: 'PUT', workspaceId: 'ws-1', key, expires: FUTURE, size: 1234, hash, disposition: 'inline', contentType: 'image/png' } as const;
    const signed = { kid: '6b67c029d4c5', sig: 'xxKRuBe7CvA4rMA_onrkg00op3z1hVhmmD4Tq9fD-Qo' };
    expect(await sign(await urlKeys(SECRET), fields)).toEqual(signed);
    expect(await verify(await urlKeys(SECRET), fields, signed.kid, signed.sig, FUTURE - 1)).toBe('ok');
  });

  it('seals and opens a multipart upload id exactly as before', async () => {
    const declared = { r2UploadId: 'r2.id/with+odd=chars', sizeBytes: 1_048_576, partSizeBytes: 10_485_760, mimeType: 'application/vnd.ms-excel' };
    const id = 'm1.1048576.10485760.604801000.6b67c029d4c5.iEv7nhsZhWDmQ0A_xIxXXuCt04yIIeupdWFXwNgqi-w.YXBwbGljYXRpb24vdm5kLm1zLWV4Y2Vs.r2.id/with+odd=chars';
    expect(await sealUploadId(await urlKeys(SECRET), { workspaceId: 'ws-1', key, hash }, declared, 1000)).toBe(id);
    expect(await openUploadId(await urlKeys(SECRET), { workspaceId: 'ws-1', key, hash }, id, 2000)).toEqual({ ...declared, expires: 604_801_000 });
  });

  it('derives the same refresh-token child id and secret as before', async () => {
    const parentId = '00000000-0000-4000-8000-000000000001';
    expect(await childTokenId(parentId)).toBe('d56e5d71-dd02-0272-bd3c-1e6befb24b34');
    expect(await childSecret(SECRET, parentId, 'A'.repeat(43))).toBe('L5oz8FQWKcAfoikS1XLj6VRJLlKr_qE30oUZXNnZ9es');
  });

  it('reads a WebSocket ticket issued before, for its workspace only', async () => {
    expect(await readTicket(SECRET, TICKET, 'ws-1', FUTURE - 1)).toEqual({ userId: 'user-1', nonce: 'nonce-1', expiresAt: FUTURE, sessionId: 'session-1' });
    expect(await readTicket(SECRET, TICKET, 'ws-2', FUTURE - 1)).toBeNull();
    expect(await readTicket(SECRET, TICKET, 'ws-1', FUTURE)).toBeNull();
  });

  it('signs and reads a snapshot page token exactly as before', async () => {
    const state = { snapshotId: 'snap-1', highWatermark: 42, after: ['messages', 'm-é'] as [string, string], expiresAt: FUTURE };
    expect(await signPageToken('a'.repeat(64), state)).toBe(PAGE_TOKEN);
    expect(await readPageToken('a'.repeat(64), PAGE_TOKEN, FUTURE - 1)).toEqual({ ok: true, state });
  });
});
