/**
 * The console's shared pieces (docs/admin.md "The console"): the API call every page makes
 * (same-origin cookies, `x-or3-admin-intent: admin` on every mutation), notices, an in-page
 * confirmation dialog for choices a native confirm() cannot offer, and small table helpers.
 * Everything from the server reaches the page as text (dom.ts `h`), never as markup.
 */
import { h } from '../../src/dom';

export type Json = Record<string, any>;

export async function api(method: string, path: string, body?: unknown, raw?: BodyInit): Promise<Json> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-or3-admin-intent'] = 'admin';
  // A raw body (an import's JSONL) is labelled JSON too: the CSRF guard takes only JSON bodies
  // with cookies, because a JSON content type cannot cross origins without a preflight.
  if (body !== undefined || raw !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const data = (await res.json().catch(() => ({}))) as Json;
  if (!res.ok) throw new Error(`${res.status}: ${data.message ?? data.error ?? res.statusText}`);
  return data;
}

export const notice = (text: string, error = false) => h('p', { class: error ? 'notice error' : 'notice', role: error ? 'alert' : 'status' }, text);

/** Runs an action and says how it went in `out`; errors (a 409's message included) are shown, never thrown. */
export async function report(out: HTMLElement, run: () => Promise<string | null>, after?: () => Promise<unknown>) {
  try {
    const said = await run();
    await after?.(); // the page shows the new state before the notice says so
    if (said !== null) out.replaceChildren(notice(said));
  } catch (err) {
    out.replaceChildren(notice((err as Error).message, true));
  }
}

/**
 * A modal dialog (native <dialog>: focus moves in, Escape cancels) with a message, optional
 * form controls and two buttons. Resolves true when confirmed.
 */
export function ask(title: string, message: string, confirmLabel: string, ...controls: Node[]): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-labelledby': 'dialog-title' });
    const close = (ok: boolean) => (dialog.close(), dialog.remove(), resolve(ok));
    dialog.addEventListener('cancel', (e) => (e.preventDefault(), close(false)));
    dialog.append(
      h('h2', { id: 'dialog-title' }, title),
      h('p', { 'data-testid': 'dialog-message' }, message),
      ...controls,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', onclick: () => close(false) }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => close(true) }, confirmLabel),
      ),
    );
    document.body.append(dialog);
    dialog.showModal();
  });
}

export const table = (testid: string, head: string[], rows: Node[]) =>
  h('table', { 'data-testid': testid }, h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, ...rows));

export const cell = (...children: (Node | string)[]) => h('td', {}, ...children);

export const labelled = (id: string, label: string, control: HTMLElement) => [h('label', { for: id }, label), Object.assign(control, { id })];

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
