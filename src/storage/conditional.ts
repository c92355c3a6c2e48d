/**
 * Conditional and range requests for blob downloads, evaluated by us (RFC 9110 §13, §14) rather
 * than handed to R2 as raw headers: R2 throws on a malformed `If-None-Match` (a 500) and answers
 * an unparsable or multi-range `Range` with the whole body labelled 206.
 *
 * The rules applied:
 * - A malformed precondition is ignored, as if absent (RFC 9110 §13.1: a recipient must ignore
 *   an invalid `If-Modified-Since`; the same is done for the others rather than failing).
 * - Order (§13.2.2): If-Match → 412; else If-Unmodified-Since → 412; If-None-Match → 304; else
 *   If-Modified-Since → 304; then If-Range decides whether Range applies.
 * - Range: only one `bytes` range is served. Anything unparsable, another unit, or several ranges
 *   is ignored (200 with the whole body; a server may ignore Range, §14.2). A single range that
 *   starts at or past the end, or a zero-length suffix, is unsatisfiable (416).
 */

/** A single byte range as asked for, before the object's size is known. */
export type ByteRange = { first: number; last?: number } | { suffix: number };

const DIGITS = /^\d{1,15}$/;

/** The one byte range a `Range` header asks for, or null when it is to be ignored. */
export function parseRange(header: string | undefined | null): ByteRange | null {
  if (!header) return null;
  const match = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (!match) return null;
  const specs = match[1]!
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (specs.length !== 1) return null; // none, or a multi-range request: served whole
  const [first, last, ...rest] = specs[0]!.split('-');
  if (rest.length || first === undefined || last === undefined) return null;
  if (first === '') return DIGITS.test(last) ? { suffix: Number(last) } : null;
  if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return null;
  if (last !== '' && Number(last) < Number(first)) return null; // invalid, so ignored (§14.1.1)
  return last === '' ? { first: Number(first) } : { first: Number(first), last: Number(last) };
}

/** The bytes `range` selects in an object of `size` bytes, or null when unsatisfiable (416). */
export function resolveRange(range: ByteRange, size: number): { offset: number; length: number } | null {
  if ('suffix' in range) {
    if (range.suffix === 0 || size === 0) return null;
    const length = Math.min(range.suffix, size);
    return { offset: size - length, length };
  }
  if (range.first >= size) return null;
  const end = Math.min(range.last ?? size - 1, size - 1);
  return { offset: range.first, length: end - range.first + 1 };
}

interface EntityTag {
  weak: boolean;
  /** The opaque tag with its quotes. */
  tag: string;
}

/** `*` or a list of entity tags (§8.8.3); null when malformed. */
export function parseEntityTags(header: string): '*' | EntityTag[] | null {
  if (header.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  const list = /\s*(?:,\s*)*(W\/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)/y;
  let at = 0;
  while (at < header.length) {
    if (/^[\s,]*$/.test(header.slice(at))) break; // empty list elements are allowed (§5.6.1)
    list.lastIndex = at;
    const match = list.exec(header);
    if (!match) return null;
    tags.push({ weak: match[1] !== undefined, tag: match[2]! });
    at = list.lastIndex;
  }
  return tags.length ? tags : null;
}

const HTTP_DATE = [
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/, // IMF-fixdate
  /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/, // rfc850
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/, // asctime
];

/** An HTTP-date (§5.6.7) in whole seconds since the epoch, or null when it is not one. */
export function parseHttpDate(value: string): number | null {
  const text = value.trim();
  if (!HTTP_DATE.some((re) => re.test(text))) return null;
  const ms = Date.parse(/GMT$/.test(text) ? text : `${text} GMT`);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}

export interface Validators {
  /** The strong entity tag, quoted. */
  etag: string;
  /** Last modification, ms since the epoch. */
  lastModified: number;
}

export type Outcome = { status: 200 | 206; range: { offset: number; length: number } | null } | { status: 304 | 412 | 416 };

const strongMatch = (tags: '*' | EntityTag[], etag: string) => tags === '*' || tags.some((t) => !t.weak && t.tag === etag);
const weakMatch = (tags: '*' | EntityTag[], etag: string) => tags === '*' || tags.some((t) => t.tag === etag.replace(/^W\//, ''));

/** What a GET of an existing object answers, given the request's headers (§13.2.2 and §14). */
export function evaluate(headers: Headers, object: Validators & { size: number }, now = Date.now()): Outcome {
  const modified = Math.floor(object.lastModified / 1000);
  const header = (name: string) => headers.get(name) ?? undefined;
  const tagsOf = (name: string) => {
    const value = header(name);
    return value === undefined ? null : parseEntityTags(value);
  };
  const dateOf = (name: string) => {
    const value = header(name);
    return value === undefined ? null : parseHttpDate(value);
  };

  const ifMatch = tagsOf('if-match');
  if (ifMatch) {
    if (!strongMatch(ifMatch, object.etag)) return { status: 412 };
  } else {
    const since = dateOf('if-unmodified-since');
    if (since !== null && modified > since) return { status: 412 };
  }
  const ifNoneMatch = tagsOf('if-none-match');
  if (ifNoneMatch) {
    if (weakMatch(ifNoneMatch, object.etag)) return { status: 304 };
  } else {
    const since = dateOf('if-modified-since');
    // A date in the future is invalid (§13.1.3), so it is ignored.
    if (since !== null && since <= Math.floor(now / 1000) && modified <= since) return { status: 304 };
  }

  const asked = parseRange(header('range'));
  if (!asked || !rangeStillApplies(header('if-range'), object.etag, modified)) return { status: 200, range: null };
  const range = resolveRange(asked, object.size);
  return range ? { status: 206, range } : { status: 416 };
}

/** If-Range (§13.1.5): the range applies only while the validator still matches (strongly). */
function rangeStillApplies(ifRange: string | undefined, etag: string, modified: number): boolean {
  if (ifRange === undefined) return true;
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tags = parseEntityTags(value);
    return tags !== null && tags !== '*' && tags.length === 1 && strongMatch(tags, etag);
  }
  return parseHttpDate(value) === modified;
}
