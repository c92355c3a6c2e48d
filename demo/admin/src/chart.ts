/**
 * A small bar chart as inline SVG (no library, nothing but attributes and classes, so the strict
 * CSP's style-src 'self' holds): one bar per bucket, the largest value labelled, a <title> per
 * bar for the exact number, and a text alternative for screen readers.
 */
const SVG = 'http://www.w3.org/2000/svg';

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export interface Point {
  label: string;
  value: number;
}

export function barChart(title: string, points: Point[], testid: string): SVGSVGElement {
  const width = 320;
  const height = 120;
  const top = 16;
  const max = Math.max(1, ...points.map((p) => p.value));
  const total = points.reduce((n, p) => n + p.value, 0);
  const svg = el('svg', { viewBox: `0 0 ${width} ${height + 14}`, role: 'img', class: 'chart', 'data-testid': testid, 'data-total': total });
  svg.append(
    el('title', {}, `${title}: ${total} in ${points.length} buckets, at most ${max} in one`),
    el('text', { x: 0, y: 11, class: 'chart-title' }, title),
  );
  const step = width / Math.max(1, points.length);
  points.forEach((p, i) => {
    const h = Math.round(((height - top) * p.value) / max);
    const bar = el('rect', { x: i * step + 1, y: height - h, width: Math.max(1, step - 2), height: h, class: 'bar' });
    bar.append(el('title', {}, `${p.label}: ${p.value}`));
    svg.append(bar);
  });
  svg.append(el('line', { x1: 0, y1: height, x2: width, y2: height, class: 'axis' }));
  svg.append(el('text', { x: width, y: 11, 'text-anchor': 'end', class: 'chart-max' }, `max ${max}`));
  if (points.length) {
    svg.append(el('text', { x: 0, y: height + 12, class: 'chart-label' }, points[0]!.label));
    svg.append(el('text', { x: width, y: height + 12, 'text-anchor': 'end', class: 'chart-label' }, points.at(-1)!.label));
  }
  return svg;
}

/** The starts (ISO) of the last `n` buckets of `ms` each, oldest first, this one included. */
export function lastBuckets(n: number, ms: number, now = Date.now()): string[] {
  const current = Math.floor(now / ms) * ms;
  return Array.from({ length: n }, (_, i) => new Date(current - (n - 1 - i) * ms).toISOString());
}

/** One counter over the given buckets (ISO start → counters); a bucket with no data is 0. */
export function seriesOf(buckets: Record<string, Record<string, number>>, starts: string[], name: string, label: (iso: string) => string): Point[] {
  return starts.map((start) => ({ label: label(start), value: buckets[start]?.[name] ?? 0 }));
}

export const HOUR_MS = 3600_000;
export const DAY_MS = 24 * HOUR_MS;
export const hourLabel = (iso: string) => `${iso.slice(11, 13)}:00`;
export const dayLabel = (iso: string) => iso.slice(5, 10);
