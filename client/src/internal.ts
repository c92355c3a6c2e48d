/**
 * The SDK's private side door: each public façade (`Or3Workspace`, `Or3Client`) hides its
 * implementation here, and the SDK's own tests (and nothing in the package's exports) reach it
 * with `reveal`. Apps cannot: this module is not exported from index.ts.
 */
const hidden = new WeakMap<object, unknown>();

export function hide(facade: object, impl: unknown): void {
  hidden.set(facade, impl);
}

export function reveal<T>(facade: object): T {
  const impl = hidden.get(facade);
  if (impl === undefined) throw new Error('or3 client: not an SDK object');
  return impl as T;
}
