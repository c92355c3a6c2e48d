/**
 * Reading and validating JSON request bodies (and, with `queryParams`, query strings).
 *
 * The size cap is enforced while reading (a missing or lying Content-Length cannot get past
 * it), malformed JSON is a 400, and zod validates the envelope. Envelope schemas are strict
 * objects, so an unknown field is rejected with a message naming it; row payloads inside an
 * envelope stay open (docs/sync.md: a newer client may add columns).
 */
import type { Context } from 'hono';
import type { z } from 'zod';
import type { AppEnv } from '../env';
import { badRequest, payloadTooLarge, unsupportedMediaType } from '../errors';
import { isJsonContentType } from './csrf';
import { LIMITS } from '../limits';

export interface JsonBodyOptions {
  /** Largest body accepted, in bytes (default LIMITS.jsonBodyBytes). */
  maxBytes?: number;
  /** Treat an empty body as `{}` (routes whose fields are all optional). */
  allowEmpty?: boolean;
}

/** Reads the body as text, refusing to buffer more than `maxBytes`. */
export async function readTextCapped(request: Request, maxBytes: number): Promise<string> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > maxBytes) {
    throw payloadTooLarge(`Request body is larger than ${maxBytes} bytes`);
  }
  if (!request.body) return '';
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw payloadTooLarge(`Request body is larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** Turns zod issues into one readable sentence that names the offending fields. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const at = issue.path.length ? issue.path.map(String).join('.') : 'body';
      if (issue.code === 'unrecognized_keys') {
        const keys = issue.keys.map((k) => `'${k}'`).join(', ');
        return `Unknown field${issue.keys.length > 1 ? 's' : ''} ${keys}${issue.path.length ? ` in ${at}` : ''}`;
      }
      return `${at}: ${issue.message}`;
    })
    .join('; ');
}

/** Parses and validates the JSON body of `c` with `schema`; throws typed 4xx errors. */
export async function jsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S, options: JsonBodyOptions = {}): Promise<z.output<S>> {
  const maxBytes = options.maxBytes ?? LIMITS.jsonBodyBytes;
  const text = await readTextCapped(c.req.raw, maxBytes);
  let value: unknown;
  if (text.trim() === '') {
    if (!options.allowEmpty) throw badRequest('Request body is required (JSON)', 'invalid_body');
    value = {};
  } else {
    if (!isJsonContentType(c.req.header('content-type'))) {
      throw unsupportedMediaType('Request bodies must be application/json');
    }
    try {
      value = JSON.parse(text);
    } catch {
      throw badRequest('Request body is not valid JSON', 'invalid_json');
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw badRequest(describeIssues(parsed.error.issues), 'invalid_body');
  return parsed.data;
}

/** The query string validated by `schema`; 400 `invalid_query` naming each offending parameter. */
export function queryParams<S extends z.ZodType>(c: Context<AppEnv>, schema: S): z.output<S> {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) throw badRequest(parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), 'invalid_query');
  return parsed.data;
}
