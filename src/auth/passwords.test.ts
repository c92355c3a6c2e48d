import { scryptSync } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { bcryptCostProblem, InvalidHashError, hashPassword, isBcryptHash, parseHash, passwordProblem, verifyPassword } from './passwords';

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

  it('enforces 12..256 characters, counting code points', () => {
    expect(passwordProblem('')).toMatch(/at least 12/);
    expect(passwordProblem('x'.repeat(7))).toMatch(/at least 12/);
    expect(passwordProblem('x'.repeat(12))).toBeNull();
    expect(passwordProblem('😀'.repeat(12))).toBeNull();
    expect(passwordProblem('x'.repeat(256))).toBeNull();
    expect(passwordProblem('x'.repeat(257))).toMatch(/at most 256/);
  });

  describe('bcrypt hashes moved in from OR3', () => {
    // Cost 4 keeps the suite fast: the verifier accepts any cost from 4 to 12 (OR3 writes 12;
    // the sign-in test under test/auth/ uses 12).
    const hash = bcrypt.hashSync('an old OR3 password', 4);

    it('verifies $2b$, $2a$ and $2y$ hashes and asks for a rehash when they match', async () => {
      for (const prefix of ['$2b$', '$2a$', '$2y$']) {
        const stored = prefix + hash.slice(4);
        expect(isBcryptHash(stored)).toBe(true);
        expect(await verifyPassword('an old OR3 password', stored)).toEqual({ ok: true, needsRehash: true });
        expect(await verifyPassword('an old OR3 passworD', stored)).toEqual({ ok: false, needsRehash: false });
      }
    });

    it('uses the raw password (no NFKC, as OR3 did) and only its first 72 UTF-8 bytes, as bcrypt does', async () => {
      const fullWidth = bcrypt.hashSync('ｐａｓｓ１２３４', 4);
      expect((await verifyPassword('ｐａｓｓ１２３４', fullWidth)).ok).toBe(true);
      expect((await verifyPassword('pass1234', fullWidth)).ok).toBe(false);
      const long = bcrypt.hashSync('y'.repeat(72), 4);
      expect((await verifyPassword('y'.repeat(72) + 'ignored', long)).ok).toBe(true);
    });

    it('refuses malformed hashes and costs outside 4..12 without deriving', async () => {
      const costly = '$2b$20$' + hash.slice(7);
      // 13 and 14 too: slower than a failed sign-in's fixed answer time (docs/auth.md "Sign-in timing").
      for (const cost of ['13', '14'])
        expect(await verifyPassword('an old OR3 password', `$2b$${cost}$` + hash.slice(7))).toEqual({ ok: false, needsRehash: false });
      expect(bcryptCostProblem(`$2b$14$` + hash.slice(7))).toMatch(/^bcrypt cost 14 is outside 4\.\.12/);
      expect(bcryptCostProblem(`$2b$12$` + hash.slice(7))).toBeNull();
      const started = Date.now();
      expect(await verifyPassword('an old OR3 password', costly)).toEqual({ ok: false, needsRehash: false });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await verifyPassword('an old OR3 password', '$2x$04$' + hash.slice(7))).toEqual({ ok: false, needsRehash: false });
      expect(await verifyPassword('an old OR3 password', hash.slice(0, -1))).toEqual({ ok: false, needsRehash: false });
      expect(await verifyPassword('an old OR3 password', '$2b$03$' + hash.slice(7))).toEqual({ ok: false, needsRehash: false });
    });
  });
});
