/**
 * What the browser says about the network. `navigator.onLine === false` is trusted (the device
 * has no network); `true` only means "maybe", so failures still decide. Node has neither signal.
 */

/** True when the browser says there is no network. */
export function isOffline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: boolean } }).navigator;
  return nav?.onLine === false;
}

/** Calls back on the browser's `online` / `offline` events; returns the unsubscribe function. */
export function listenNetwork(handlers: { online?: () => void; offline?: () => void }): () => void {
  const target = globalThis as { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
  if (typeof target.addEventListener !== 'function' || typeof (globalThis as { window?: unknown }).window === 'undefined') return () => {};
  const online = () => handlers.online?.();
  const offline = () => handlers.offline?.();
  target.addEventListener('online', online);
  target.addEventListener('offline', offline);
  return () => {
    target.removeEventListener?.('online', online);
    target.removeEventListener?.('offline', offline);
  };
}
