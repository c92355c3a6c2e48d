/** A minimal DOM builder: text always goes through textContent, so no data can inject markup. */
type Child = Node | string | null | undefined | false;
type Props = Record<string, unknown> & { class?: string; dataset?: Record<string, string> };

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value !== 'function') throw new Error(`h(): ${key} must be a function`);
    if ((key === 'href' || key === 'src') && !safeUrl(String(value))) throw new Error(`h(): refusing ${key} ${String(value).slice(0, 40)}`);
    if (key === 'class') el.className = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value as EventListener);
    else if (key in el && typeof value !== 'string') (el as unknown as Record<string, unknown>)[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** Only same-origin, blob:, https: and data:image URLs may go into href/src (never javascript:). */
function safeUrl(url: string): boolean {
  try {
    const parsed = new URL(url, location.href);
    return (
      parsed.origin === location.origin ||
      parsed.protocol === 'blob:' ||
      parsed.protocol === 'https:' ||
      (parsed.protocol === 'data:' && url.startsWith('data:image/'))
    );
  } catch {
    return false;
  }
}

export function replace(target: Element, ...children: (Child | Child[])[]) {
  target.replaceChildren(...(children.flat().filter(Boolean) as (Node | string)[]));
}

export function toast(text: string, kind: 'info' | 'error' = 'info') {
  let box = document.querySelector('.toasts');
  if (!box) document.body.append((box = h('div', { class: 'toasts', role: 'status' })));
  const item = h('div', { class: `toast ${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

export const formatTime = (seconds: number) => new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
