/**
 * Content hashes (the R2 keys they map to: src/storage/blob-keys.ts). Canonical hashes are `sha256:<64 hex>`; legacy
 * OR3 files use `md5:<32 hex>` or a bare 32-hex MD5, accepted for lookups of old files only.
 *
 * One module parses them all, because the seed's bug was exactly here: a `sha256:` prefix went
 * into an object path unparsed. Keys are built only from the parsed, validated hex.
 */
import { invalid as badRequest } from './errors';

const encoder = new TextEncoder();

/** Lower-case hex, two digits per byte. */
export function toHex(bytes: Uint8Array): string {
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** SHA-256 as 64 hex characters: op fingerprints, and what is stored of refresh secrets and invite tokens. */
export async function sha256Hex(input: string | Uint8Array): Promise<string> {
  const bytes = typeof input === 'string' ? encoder.encode(input) : input;
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

export type HashAlgorithm = 'sha256' | 'md5';

export interface ParsedHash {
  algorithm: HashAlgorithm;
  /** Lower-case hex digest. */
  hex: string;
  /** The canonical spelling (`sha256:<hex>` or `md5:<hex>`). */
  canonical: string;
}

/** Parses any accepted spelling; null when it is not a hash we accept. */
export function parseHash(input: string): ParsedHash | null {
  const text = input.trim();
  let match = /^sha256:([0-9a-fA-F]{64})$/i.exec(text);
  if (match) return make('sha256', match[1]!);
  match = /^md5:([0-9a-fA-F]{32})$/i.exec(text) ?? /^([0-9a-fA-F]{32})$/.exec(text);
  if (match) return make('md5', match[1]!);
  return null;
}

function make(algorithm: HashAlgorithm, hex: string): ParsedHash {
  const lower = hex.toLowerCase();
  return { algorithm, hex: lower, canonical: `${algorithm}:${lower}` };
}

/** Parses a hash from a request; 400 for anything else. `uploadable` demands sha256. */
export function requireHash(input: string, opts: { uploadable?: boolean } = {}): ParsedHash {
  const parsed = parseHash(input);
  if (!parsed) throw badRequest('hash must be sha256:<64 hex> (or, for old files, md5:<32 hex>)', 'invalid_hash');
  if (opts.uploadable && parsed.algorithm !== 'sha256') throw badRequest('New uploads must use a sha256:<64 hex> hash', 'invalid_hash');
  return parsed;
}
