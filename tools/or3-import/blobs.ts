/**
 * Where OR3 kept the bytes (docs/migrating-from-or3.md): its fs storage provider's directory, in
 * either layout, or an S3 bucket with the same layouts under a prefix.
 *
 *   <root>/workspaces/<workspaceId>/<alg>_<hex>   or3-provider-fs (per workspace; `<alg>_<hex>.meta.json` beside it)
 *   <root>/<hex[0:2]>/<hex[2:4]>/<hex>            the sharded layout of OR3's storage design
 *
 * Every blob is read through SHA-256 before it is sent, so a corrupted file is reported, never
 * uploaded.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AwsClient } from 'aws4fetch';

export interface ParsedOr3Hash {
  algorithm: 'sha256' | 'md5';
  hex: string;
}

/** OR3's spellings: `sha256:<hex>`, `md5:<hex>`, bare 64 hex (sha256) or bare 32 hex (md5). */
export function parseOr3Hash(input: string): ParsedOr3Hash | null {
  const text = input.trim().toLowerCase();
  let m = /^sha256:([0-9a-f]{64})$/.exec(text) ?? /^([0-9a-f]{64})$/.exec(text);
  if (m) return { algorithm: 'sha256', hex: m[1]! };
  m = /^md5:([0-9a-f]{32})$/.exec(text) ?? /^([0-9a-f]{32})$/.exec(text);
  if (m) return { algorithm: 'md5', hex: m[1]! };
  return null;
}

export interface FoundBlob {
  where: string;
  size: number;
  /** A fresh stream of the bytes each call. */
  open(): ReadableStream<Uint8Array>;
}

export interface BlobStore {
  describe(): string;
  /** The blob of `hash` in `workspaceId`, or null with the places looked at. */
  find(workspaceId: string, hash: ParsedOr3Hash): Promise<FoundBlob | { missing: string[] }>;
}

const candidates = (workspaceId: string, hash: ParsedOr3Hash) => [
  `workspaces/${workspaceId}/${hash.algorithm}_${hash.hex}`,
  `${hash.hex.slice(0, 2)}/${hash.hex.slice(2, 4)}/${hash.hex}`,
];

export function fsStore(root: string): BlobStore {
  return {
    describe: () => root,
    async find(workspaceId, hash) {
      const looked: string[] = [];
      for (const rel of candidates(workspaceId, hash)) {
        const path = join(root, rel);
        looked.push(path);
        const info = await stat(path).catch(() => null);
        if (info?.isFile()) return { where: path, size: info.size, open: () => Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array> };
      }
      return { missing: looked };
    },
  };
}

export interface S3Options {
  endpoint: string;
  bucket: string;
  prefix: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** An S3-compatible bucket (path-style URLs: `<endpoint>/<bucket>/<prefix><key>`), signed with SigV4. */
export function s3Store(options: S3Options): BlobStore {
  const client = new AwsClient({ accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey, service: 's3', region: options.region });
  const prefix = options.prefix && !options.prefix.endsWith('/') ? `${options.prefix}/` : options.prefix;
  const url = (key: string) =>
    `${options.endpoint.replace(/\/+$/, '')}/${options.bucket}/${prefix}${key}`.replace(/[^/:]+/g, (seg) => encodeURIComponent(decodeURIComponent(seg)));
  return {
    describe: () => `s3 ${options.endpoint} ${options.bucket}/${prefix}`,
    async find(workspaceId, hash) {
      const looked: string[] = [];
      for (const rel of candidates(workspaceId, hash)) {
        const at = url(rel);
        looked.push(at);
        const head = await client.fetch(at, { method: 'HEAD' });
        if (head.status === 404 || head.status === 403) continue;
        if (!head.ok) throw new Error(`S3 HEAD ${at}: ${head.status}`);
        return {
          where: at,
          size: Number(head.headers.get('content-length') ?? 0),
          open: () => {
            const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
            void client.fetch(at).then(
              async (res) => {
                if (!res.ok || !res.body) return writable.abort(new Error(`S3 GET ${at}: ${res.status}`));
                await res.body.pipeTo(writable);
              },
              (err) => writable.abort(err),
            );
            return readable;
          },
        };
      }
      return { missing: looked };
    },
  };
}

/** SHA-256 (and MD5, for legacy hashes) of a stream, in one read. */
export async function digest(stream: ReadableStream<Uint8Array>): Promise<{ sha256: string; md5: string; size: number }> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  let size = 0;
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    sha.update(chunk);
    md5.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex'), size };
}

/** A MIME type from the first bytes, for blobs no file_meta row describes. */
export async function sniffMime(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  const { value } = await reader.read();
  await reader.cancel();
  const b = value ?? new Uint8Array();
  const starts = (...bytes: number[]) => bytes.every((x, i) => b[i] === x);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45) return 'image/webp';
  if (starts(0x25, 0x50, 0x44, 0x46)) return 'application/pdf';
  return 'application/octet-stream';
}
