/**
 * Canonical JSON (docs/sync.md "Guarantees", idempotency): payloads serialized with their keys
 * sorted, so equal payloads give equal fingerprints and are stored identically.
 */

/** Thrown by `canonicalJson` when a value is nested deeper than its bound. */
export class TooDeep extends Error {
  constructor(readonly maxDepth: number) {
    super(`nested deeper than ${maxDepth} levels`);
  }
}

/**
 * JSON with object keys sorted at every level, so equal payloads give equal fingerprints.
 * Exactly `JSON.stringify` of the value with its keys sorted (stored fingerprints must never
 * change), but written with an explicit stack instead of recursion, so no input can overflow the
 * call stack; with `maxDepth`, it throws `TooDeep` past that many levels of arrays and objects.
 */
export function canonicalJson(value: unknown, maxDepth = Infinity): string {
  const out: string[] = [];
  // Either text to emit as is, or a value to serialize at a depth (its container's + 1).
  const stack: (string | { value: unknown; depth: number })[] = [{ value, depth: 1 }];
  while (stack.length) {
    const task = stack.pop()!;
    if (typeof task === 'string') {
      out.push(task);
      continue;
    }
    const { value: v, depth } = task;
    if (v === null || typeof v !== 'object') {
      // As JSON.stringify writes an array slot it cannot represent (undefined, functions…).
      out.push(JSON.stringify(v) ?? 'null');
      continue;
    }
    if (depth > maxDepth) throw new TooDeep(maxDepth);
    if (Array.isArray(v)) {
      stack.push(']');
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push({ value: v[i], depth: depth + 1 });
        if (i > 0) stack.push(',');
      }
      stack.push('[');
      continue;
    }
    const record = v as Record<string, unknown>;
    // JSON.stringify leaves out properties it cannot represent.
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined && typeof record[k] !== 'function' && typeof record[k] !== 'symbol')
      .sort();
    stack.push('}');
    for (let i = keys.length - 1; i >= 0; i--) {
      stack.push({ value: record[keys[i]!], depth: depth + 1 });
      stack.push(`${i > 0 ? ',' : ''}${JSON.stringify(keys[i])}:`);
    }
    stack.push('{');
  }
  return out.join('');
}
