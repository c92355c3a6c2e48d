/**
 * Password hashing: native scrypt (node:crypto) N=2^14, r=8, p=5, a 16-byte salt and a
 * 32-byte key, stored as a self-describing PHC string `$scrypt$v=1$ln=14,r=8,p=5$<salt>$<key>`.
 *
 * Why scrypt and these numbers: it is one of OWASP's equal-strength rows, fits workerd's scrypt
 * cost cap (N·r·p ≤ 2^20) with room to spare, needs 16 MiB of the isolate's 128 MB, and PBKDF2
 * is capped at 100k iterations in production (far below OWASP). Stored parameters are parsed
 * strictly and bounded BEFORE deriving, so a corrupted or hostile row cannot ask for unbounded
 * work. Verification tells the caller when the stored parameters are not current, so a
 * successful login can rehash.
 *
 * Hashes moved in from OR3 (docs/migrating-from-or3.md) are bcrypt (`$2a$`/`$2b$`/`$2y$`, bcryptjs
 * at cost 12, the raw password with no normalisation): they verify as bcrypt does, bounded the
 * same way (cost 4..12: OR3's own cost is the most accepted, at import and here, so no stored
 * hash takes longer to check than the fixed answer time of a failed sign-in; docs/auth.md
 * "Sign-in timing"), and always ask for a rehash, so the first sign-in replaces them.
 */
import { scrypt as scryptCallback, timingSafeEqual, randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';

export const PASSWORD_MIN_CHARS = 12;
export const PASSWORD_MAX_CHARS = 256;

/** Current parameters: N = 2^ln. */
export const CURRENT = { ln: 14, r: 8, p: 5 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Bounds on stored parameters (docs/auth.md "Passwords"): checked before any derivation. */
const BOUNDS = { lnMax: 16, rMax: 16, pMax: 8, costMax: 2 ** 20, memoryMax: 32 * 1024 * 1024 } as const;

export interface ScryptParams {
  ln: number;
  r: number;
  p: number;
  salt: Uint8Array;
  key: Uint8Array;
}

export class InvalidHashError extends Error {
  constructor(reason: string) {
    super(`Stored password hash rejected: ${reason}`);
    this.name = 'InvalidHashError';
  }
}

/** Normalises a password the same way at registration and at login (NFKC). */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** Returns a reason when a new password is unacceptable, else null. Counts code points, not UTF-16 units. */
export function passwordProblem(password: string): string | null {
  const length = [...normalizePassword(password)].length;
  if (length < PASSWORD_MIN_CHARS) return `Password must be at least ${PASSWORD_MIN_CHARS} characters`;
  if (length > PASSWORD_MAX_CHARS) return `Password must be at most ${PASSWORD_MAX_CHARS} characters`;
  return null;
}

const B64 = /^[A-Za-z0-9+/]+$/;

function decodeB64(text: string, what: string): Uint8Array {
  if (!B64.test(text)) throw new InvalidHashError(`${what} is not base64`);
  return Uint8Array.from(Buffer.from(text, 'base64'));
}

const encodeB64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

/** Parses a PHC scrypt string strictly and checks every bound. Throws InvalidHashError. */
export function parseHash(phc: string): ScryptParams {
  if (phc.length > 200) throw new InvalidHashError('too long');
  const parts = phc.split('$');
  // ['', 'scrypt', 'v=1', 'ln=..,r=..,p=..', salt, key]
  if (parts.length !== 6 || parts[0] !== '') throw new InvalidHashError('not a PHC string');
  if (parts[1] !== 'scrypt') throw new InvalidHashError(`unsupported algorithm "${parts[1]?.slice(0, 20)}"`);
  if (parts[2] !== 'v=1') throw new InvalidHashError('unsupported version');
  const match = /^ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})$/.exec(parts[3]!);
  if (!match) throw new InvalidHashError('malformed parameters');
  const [ln, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (ln < 1 || ln > BOUNDS.lnMax) throw new InvalidHashError('ln out of bounds');
  if (r < 1 || r > BOUNDS.rMax) throw new InvalidHashError('r out of bounds');
  if (p < 1 || p > BOUNDS.pMax) throw new InvalidHashError('p out of bounds');
  if (2 ** ln * r * p > BOUNDS.costMax) throw new InvalidHashError('cost out of bounds');
  if (128 * 2 ** ln * r > BOUNDS.memoryMax) throw new InvalidHashError('memory out of bounds');
  const salt = decodeB64(parts[4]!, 'salt');
  const key = decodeB64(parts[5]!, 'key');
  if (salt.byteLength !== SALT_BYTES) throw new InvalidHashError('salt must be 16 bytes');
  if (key.byteLength !== KEY_BYTES) throw new InvalidHashError('key must be 32 bytes');
  return { ln, r, p, salt, key };
}

function derive(password: string, salt: Uint8Array, ln: number, r: number, p: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    scryptCallback(normalizePassword(password), salt, KEY_BYTES, { N: 2 ** ln, r, p, maxmem: 2 * BOUNDS.memoryMax }, (err, key) =>
      err ? reject(err) : resolve(Uint8Array.from(key)),
    );
  });
}

/** Hashes a password with the current parameters and a fresh salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = Uint8Array.from(randomBytes(SALT_BYTES));
  const key = await derive(password, salt, CURRENT.ln, CURRENT.r, CURRENT.p);
  return `$scrypt$v=1$ln=${CURRENT.ln},r=${CURRENT.r},p=${CURRENT.p}$${encodeB64(salt)}$${encodeB64(key)}`;
}

export interface VerifyResult {
  ok: boolean;
  /** True when the password matched but the stored parameters are not the current ones. */
  needsRehash: boolean;
}

/** A bcrypt hash as OR3's basic-auth provider stored it: `$2[aby]$<cost>$<22 salt + 31 hash chars>`. */
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
/**
 * Costs accepted from stored bcrypt hashes: OR3 writes 12 (about 0.33 s here); 14 took 1.26 s,
 * longer than a failed sign-in's fixed answer time, so it would tell imported accounts apart.
 */
export const BCRYPT_COST = { min: 4, max: 12 } as const;

export const isBcryptHash = (stored: string) => BCRYPT.test(stored);

/** Why a bcrypt hash cannot be imported (its cost is outside BCRYPT_COST), or null. */
export function bcryptCostProblem(stored: string): string | null {
  const cost = Number(BCRYPT.exec(stored)?.[1] ?? NaN);
  return cost >= BCRYPT_COST.min && cost <= BCRYPT_COST.max
    ? null
    : `bcrypt cost ${cost} is outside ${BCRYPT_COST.min}..${BCRYPT_COST.max}, the costs this server verifies (a slower hash would let sign-in timing reveal the account; docs/auth.md "Sign-in timing")`;
}

/**
 * Verifies a bcrypt hash (bcryptjs: the password's UTF-8 bytes, the first 72 of them, as every
 * bcrypt does). bcryptjs compares the whole encoded hash itself; the cost is bounded first.
 */
async function verifyBcrypt(password: string, stored: string): Promise<VerifyResult> {
  const cost = Number(BCRYPT.exec(stored)?.[1] ?? NaN);
  if (!(cost >= BCRYPT_COST.min && cost <= BCRYPT_COST.max)) return { ok: false, needsRehash: false };
  const ok = await bcrypt.compare(password, stored);
  return { ok, needsRehash: ok };
}

/**
 * Verifies `password` against a stored PHC string in constant time. A malformed or
 * out-of-bounds stored hash fails without deriving anything. A bcrypt hash (moved in from OR3)
 * verifies as bcrypt and, when it matches, asks for a rehash into the current scrypt format.
 */
export async function verifyPassword(password: string, stored: string): Promise<VerifyResult> {
  if (stored.startsWith('$2')) return verifyBcrypt(password, stored);
  let params: ScryptParams;
  try {
    params = parseHash(stored);
  } catch {
    return { ok: false, needsRehash: false };
  }
  const key = await derive(password, params.salt, params.ln, params.r, params.p);
  const ok = timingSafeEqual(key, params.key);
  const current = params.ln === CURRENT.ln && params.r === CURRENT.r && params.p === CURRENT.p;
  return { ok, needsRehash: ok && !current };
}
