import { describe, expect, it } from 'vitest';
import { evaluate, parseEntityTags, parseHttpDate, parseRange, resolveRange } from './conditional';

const etag = '"abc"';
const lastModified = Date.UTC(2026, 0, 1, 12, 0, 0);
const object = { etag, lastModified, size: 16 };
const judge = (headers: Record<string, string>) => evaluate(new Headers(headers), object, Date.UTC(2026, 5, 1));

describe('Range (RFC 9110 §14)', () => {
  it('parses one bytes range, and ignores everything else', () => {
    expect(parseRange('bytes=2-5')).toEqual({ first: 2, last: 5 });
    expect(parseRange('BYTES = 2-')).toEqual({ first: 2 });
    expect(parseRange('bytes=-3')).toEqual({ suffix: 3 });
    for (const ignored of [
      undefined,
      '',
      'bytes=',
      'bytes=-',
      'bytes=abc',
      'bytes=5-2',
      'bytes=0-1,3-4',
      'items=0-1',
      'bytes=1-2-3',
      'bytes=0x1-2',
      `bytes=${'9'.repeat(20)}-`,
    ]) {
      expect(parseRange(ignored), String(ignored)).toBeNull();
    }
  });

  it('resolves against the size: clamps the end and the suffix, 416 past the end or for a zero suffix', () => {
    expect(resolveRange({ first: 15, last: 100 }, 16)).toEqual({ offset: 15, length: 1 });
    expect(resolveRange({ suffix: 20 }, 16)).toEqual({ offset: 0, length: 16 });
    expect(resolveRange({ first: 16 }, 16)).toBeNull();
    expect(resolveRange({ suffix: 0 }, 16)).toBeNull();
  });
});

describe('preconditions (RFC 9110 §13)', () => {
  it('parses entity-tag lists, and refuses malformed ones', () => {
    expect(parseEntityTags('*')).toBe('*');
    expect(parseEntityTags(' "a" , W/"b",, ')).toEqual([
      { weak: false, tag: '"a"' },
      { weak: true, tag: '"b"' },
    ]);
    for (const bad of ['garbage', '"unterminated', 'W/', ',,,', '"a" "b"', 'w/"a"', '"a\u0001"']) expect(parseEntityTags(bad), bad).toBeNull();
  });

  it('parses the three HTTP-date forms only', () => {
    const t = Date.UTC(1994, 10, 6, 8, 49, 37) / 1000;
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(t);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(t);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(t);
    for (const bad of ['not a date', '1994-11-06T08:49:37Z', '784111777']) expect(parseHttpDate(bad), bad).toBeNull();
  });

  it('answers 304/412 for matching validators, and ignores malformed or future ones', () => {
    const date = (ms: number) => new Date(ms).toUTCString();
    expect(judge({ 'if-none-match': etag })).toEqual({ status: 304 });
    expect(judge({ 'if-none-match': `W/${etag}` })).toEqual({ status: 304 });
    expect(judge({ 'if-none-match': '"other", *' })).toEqual({ status: 200, range: null });
    expect(judge({ 'if-match': '"other"' })).toEqual({ status: 412 });
    expect(judge({ 'if-match': `W/${etag}` })).toEqual({ status: 412 }); // If-Match compares strongly
    expect(judge({ 'if-unmodified-since': date(lastModified - 1000) })).toEqual({ status: 412 });
    expect(judge({ 'if-modified-since': date(lastModified) })).toEqual({ status: 304 });
    // If-None-Match wins over If-Modified-Since.
    expect(judge({ 'if-none-match': '"other"', 'if-modified-since': date(lastModified) })).toEqual({ status: 200, range: null });
    const malformed: Record<string, string>[] = [
      { 'if-none-match': 'garbage' },
      { 'if-match': 'garbage' },
      { 'if-modified-since': 'soon' },
      { 'if-unmodified-since': 'soon' },
      { 'if-modified-since': 'Wed, 21 Oct 2099 07:28:00 GMT' },
    ];
    for (const ignored of malformed) {
      expect(judge(ignored), JSON.stringify(ignored)).toEqual({ status: 200, range: null });
    }
  });

  it('applies a range only while If-Range still matches, strongly', () => {
    expect(judge({ range: 'bytes=2-5', 'if-range': etag })).toEqual({ status: 206, range: { offset: 2, length: 4 } });
    expect(judge({ range: 'bytes=2-5', 'if-range': new Date(lastModified).toUTCString() })).toEqual({ status: 206, range: { offset: 2, length: 4 } });
    for (const stale of ['"other"', `W/${etag}`, 'garbage', 'Thu, 01 Jan 2026 12:00:01 GMT'])
      expect(judge({ range: 'bytes=2-5', 'if-range': stale }), stale).toEqual({ status: 200, range: null });
    expect(judge({ range: 'bytes=16-' })).toEqual({ status: 416 });
  });
});
