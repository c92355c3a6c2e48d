import { scryptSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DUMMY_HASH, InvalidHashError, hashPassword, parseHash, passwordProblem, verifyPassword } from './passwords';

const phc = (ln: number, r: number, p: number, password: string) => {
  const salt = Buffer.alloc(16, 7);
  const key = scryptSync(password.normalize('NFKC'), salt, 32, { N: 2 ** ln, r, p, maxmem: 64 * 1024 * 1024 });
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$v=1$ln=${ln},r=${r},p=${p}$${b64(salt)}$${b64(key)}`;
};

describe('passwords', () => {
  it('hashes into a self-describing PHC string with the current parameters and verifies', async () => {
    const hash = await hashPassword('correct horse battery');
    expect(hash).toMatch(/^\$scrypt\$v=1\$ln=14,r=8,p=5\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(await verifyPassword('correct horse battery', hash)).toEqual({ ok: true, needsRehash: false });
    expect(await verifyPassword('correct horse batterY', hash)).toEqual({ ok: false, needsRehash: false });
  });

  it('salts every hash', async () => {
    expect(await hashPassword('same password 123')).not.toBe(await hashPassword('same password 123'));
  });

  it('verifies NFKC-equivalent passwords', async () => {
    const hash = await hashPassword('ｐａｓｓｗｏｒｄ１２３４５'); // full-width forms
    expect((await verifyPassword('password12345', hash)).ok).toBe(true);
  });

  it('flags a low-cost hash for rehash only when the password matches', async () => {
    const weak = phc(10, 8, 1, 'legacy password!');
    expect(await verifyPassword('legacy password!', weak)).toEqual({ ok: true, needsRehash: true });
    expect(await verifyPassword('wrong password!!', weak)).toEqual({ ok: false, needsRehash: false });
  });

  it.each([
    ['$scrypt$v=1$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'ln out of bounds'],
    ['$scrypt$v=1$ln=14,r=8,p=99$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'p out of bounds'],
    ['$scrypt$v=1$ln=16,r=16,p=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'cost out of bounds'],
    ['$scrypt$v=1$ln=14,r=8,p=5$not*base64$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'not base64'],
    ['$scrypt$v=1$ln=14,r=8,p=5$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'salt must be 16 bytes'],
    ['$argon2id$v=19$m=19456,t=2,p=1$AAAA$AAAA', 'unsupported algorithm'],
    ['$2b$12$abcdefghijklmnopqrstuuJ0dEcBKD8lFXBwN8cdcLcPHg6Q5Qy2', 'not a PHC string'],
    ['', 'not a PHC string'],
  ])('rejects the stored hash %s before deriving (%s)', async (stored, reason) => {
    expect(() => parseHash(stored)).toThrow(InvalidHashError);
    expect(() => parseHash(stored)).toThrow(reason);
    expect(await verifyPassword('anything at all', stored)).toEqual({ ok: false, needsRehash: false });
  });

  it('ships a dummy hash with the current parameters', () => {
    expect(parseHash(DUMMY_HASH)).toMatchObject({ ln: 14, r: 8, p: 5 });
  });

  it('enforces 12..256 characters, counting code points', () => {
    expect(passwordProblem('')).toMatch(/at least 12/);
    expect(passwordProblem('x'.repeat(7))).toMatch(/at least 12/);
    expect(passwordProblem('x'.repeat(12))).toBeNull();
    expect(passwordProblem('😀'.repeat(12))).toBeNull();
    expect(passwordProblem('x'.repeat(256))).toBeNull();
    expect(passwordProblem('x'.repeat(257))).toMatch(/at most 256/);
  });
});
