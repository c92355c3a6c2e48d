/** Sign-in with a bcrypt hash moved in from OR3: it works, and the hash is replaced by our own. */
import { env } from 'cloudflare:workers';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { parseHash } from '../../src/auth/passwords';
import { createPasswordUser } from '../../src/auth/store';
import { randomIp, signInBearer, uniqueEmail } from './helpers';
import { api } from '../helpers';

// OR3's basic-auth provider hashes with bcryptjs at cost 12 (docs/migrating-from-or3.md).
const OLD_PASSWORD = 'my old or3 pw'; // 13 characters; OR3 allowed 8 and up
const storedHash = (email: string) => env.DB.prepare('SELECT password_hash FROM users WHERE email = ?').bind(email).first<{ password_hash: string }>();

describe('sign-in with an OR3 bcrypt hash', () => {
  it('accepts the old password once and replaces the hash with our scrypt hash', async () => {
    const email = uniqueEmail('or3');
    const hash = bcrypt.hashSync(OLD_PASSWORD, 12);
    expect(hash).toMatch(/^\$2b\$12\$/);
    await createPasswordUser(env.DB, { email, passwordHash: hash });

    const wrong = await signInBearer(email, 'not my old pw');
    expect(wrong.res.status).toBe(401);
    expect((await storedHash(email))?.password_hash).toBe(hash);

    const first = await signInBearer(email, OLD_PASSWORD);
    expect(first.res.status).toBe(200);
    const upgraded = (await storedHash(email))!.password_hash;
    expect(upgraded).toMatch(/^\$scrypt\$v=1\$ln=14,r=8,p=5\$/);
    expect(() => parseHash(upgraded)).not.toThrow();

    // The same password keeps working against the new hash; the bcrypt one is gone for good.
    expect((await signInBearer(email, OLD_PASSWORD)).res.status).toBe(200);
    expect((await storedHash(email))!.password_hash).toBe(upgraded);
  });

  it('answers a wrong password for a bcrypt user exactly like an unknown email', async () => {
    const email = uniqueEmail('or3');
    await createPasswordUser(env.DB, { email, passwordHash: bcrypt.hashSync(OLD_PASSWORD, 4) });
    const signIn = (body: unknown) =>
      api('/api/basic-auth/sign-in', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': randomIp() },
        body: JSON.stringify(body),
      });
    const bad = await signIn({ email, password: 'wrong password' });
    const unknown = await signIn({ email: uniqueEmail('nobody'), password: 'wrong password' });
    expect(bad.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(await bad.json()).toEqual(await unknown.json());
  });
});
