/**
 * Service token strings (docs/service-api.md): `or3st_<token id>_<secret>`, the secret 32 random
 * bytes in base64url. Only the SHA-256 of the secret is stored, in the workspace's object; the
 * Worker hashes what a request brings and the object compares. Pure, for the Worker and the object.
 */
import { encodeBase64url, sha256Hex } from '../crypto';

const PREFIX = 'or3st_';
const SHAPE = /^or3st_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

/** What the Worker passes to the object: which token, and the hash of the secret it was shown. */
export interface ServiceCredential {
  tokenId: string;
  secretHash: string;
}

export function newToken(): { tokenId: string; token: string; secret: string } {
  const tokenId = crypto.randomUUID().replaceAll('-', '');
  const secret = encodeBase64url(crypto.getRandomValues(new Uint8Array(32)));
  return { tokenId, token: `${PREFIX}${tokenId}_${secret}`, secret };
}

export const hashSecret = (secret: string) => sha256Hex(`or3-service-token:${secret}`);

/** Whether a bearer value looks like a service token (then it is never tried as a JWT). */
export const isServiceToken = (bearer: string) => bearer.startsWith(PREFIX);

/** The credential of a well-formed token, or null. */
export async function serviceCredential(bearer: string): Promise<ServiceCredential | null> {
  const match = SHAPE.exec(bearer);
  return match ? { tokenId: match[1]!, secretHash: await hashSecret(match[2]!) } : null;
}
