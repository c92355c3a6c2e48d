/**
 * The docs are self-contained: every relative link in README.md, client/README.md and docs/*.md
 * resolves to a file inside this repository (and, for `file.md#anchor`, to a heading there), and
 * no page sends its reader to design files that ship elsewhere (API.md, PERFORMANCE.md,
 * SECURITY.md, ../shared): the wire reference is docs/api.md.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pages = [
  'README.md',
  'client/README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** Inline `[text](target)` and reference `[label]: target` links, outside code blocks. */
function links(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  const refs = [...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]!);
  const html = [...text.matchAll(/<(?:a|img)\s[^>]*(?:href|src)="([^"]+)"/g)].map((m) => m[1]!);
  return [...inline, ...refs, ...html];
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}

const external = /^[a-z][a-z0-9+.-]*:/i;

describe('docs are self-contained', () => {
  it.each(pages)('%s: every relative link resolves inside the repository', (page) => {
    const markdown = readFileSync(join(root, page), 'utf8');
    const problems: string[] = [];
    for (const target of links(markdown)) {
      if (external.test(target)) continue;
      const [path, anchor] = target.split('#') as [string, string | undefined];
      const file = path ? resolve(dirname(join(root, page)), decodeURIComponent(path)) : join(root, page);
      if (relative(root, file).startsWith('..')) problems.push(`${target}: outside the repository`);
      else if (!existsSync(file)) problems.push(`${target}: no such file`);
      else if (anchor && file.endsWith('.md') && statSync(file).isFile() && !anchors(readFileSync(file, 'utf8')).has(anchor))
        problems.push(`${target}: no heading #${anchor}`);
    }
    expect(problems).toEqual([]);
  });

  it.each(pages)('%s: names no design file from outside the repository', (page) => {
    const markdown = readFileSync(join(root, page), 'utf8');
    const named = [...markdown.matchAll(/\b(API\.md|PERFORMANCE\.md|SECURITY\.md)\b|\.\.\/shared|\/work\/shared/g)].map((m) => m[0]);
    expect(named).toEqual([]);
  });
});
