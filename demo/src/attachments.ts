/**
 * Attachments in the demo: the composer's staged files and the attachments shown under messages.
 *
 * A staged upload the server refuses (its type or size, say) shows the reason, can be removed,
 * and is never sent with a message. An attachment that cannot be downloaded (the file never
 * arrived) shows its name and the failure once, instead of a "Downloading 0%" that retries on
 * every redraw; a Retry button tries again.
 */
import type { Or3Workspace, TransferProgress } from '../../client/src/index';
import { formatBytes, h } from './dom';

export interface Staged {
  hash: string;
  name: string;
  /** The server's reason when it refused the upload: such a file is never sent. */
  refused?: string;
}

const objectUrls = new Map<string, Promise<string>>();
const failedDownloads = new Map<string, string>();
const transfers = new Map<string, TransferProgress>();

/** Forgets every cached object URL and failure (on a workspace switch). */
export function resetAttachments() {
  for (const url of objectUrls.values()) void url.then((u) => URL.revokeObjectURL(u)).catch(() => undefined);
  objectUrls.clear();
  failedDownloads.clear();
  transfers.clear();
}

/** A transfer event: progress bars, and a refused upload's chip. */
export function onTransfer(t: TransferProgress, staged: Staged[]) {
  transfers.set(t.hash, t);
  for (const bar of document.querySelectorAll<HTMLElement>(`[data-progress="${t.hash}"]`)) renderProgress(bar, t);
  if (t.direction === 'upload' && t.state === 'failed') {
    const item = staged.find((s) => s.hash === t.hash);
    if (item) {
      item.refused = t.error ?? 'The upload failed';
      for (const chip of document.querySelectorAll<HTMLElement>(`.chip[data-hash="${t.hash}"]`)) {
        chip.classList.add('refused');
        chip.querySelector('.reason')!.textContent = `Not sent: ${item.refused}`;
      }
    }
  }
}

/** A staged file's chip: name, progress or the refusal, and a remove button. */
export function chipView(item: Staged, remove: () => void) {
  return h(
    'span',
    { class: 'chip', 'data-hash': item.hash, 'data-testid': 'staged' },
    item.name,
    h('div', { class: 'progress', 'data-progress': item.hash }),
    h('span', { class: 'reason error', 'data-testid': 'staged-reason' }, item.refused ? `Not sent: ${item.refused}` : ''),
    h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${item.name}`, 'data-testid': 'staged-remove', onclick: remove }, '×'),
  );
}

/** An attachment under a message. `onShown` runs once its content is in place (images: loaded). */
export function attachmentView(ws: Or3Workspace, hash: string, onShown: () => void) {
  const holder = h('div', { class: 'attachment', 'data-hash': hash, 'data-testid': 'attachment' }, h('div', { class: 'progress', 'data-progress': hash }));
  const progress = transfers.get(hash);
  if (progress) renderProgress(holder.firstElementChild as HTMLElement, progress);
  void showAttachment(ws, holder, hash, onShown);
  return holder;
}

async function showAttachment(ws: Or3Workspace, holder: HTMLElement, hash: string, onShown: () => void) {
  const meta = await ws.db.file_meta.get(hash);
  const name = String(meta?.name ?? 'attachment');
  const failure = failedDownloads.get(hash);
  if (failure !== undefined) return showFailure(ws, holder, hash, name, failure, onShown);
  try {
    // One download and one object URL per file, however often the message list redraws.
    let pending = objectUrls.get(hash);
    if (!pending) {
      pending = ws.files.get(hash).then((blob) => URL.createObjectURL(blob));
      objectUrls.set(hash, pending);
      pending.catch((err) => {
        objectUrls.delete(hash);
        failedDownloads.set(hash, err instanceof Error ? err.message : 'download failed');
      });
    }
    const url = await pending;
    const isImage = String(meta?.mime_type ?? '').startsWith('image/');
    const content = isImage
      ? h('img', { src: url, alt: name, 'data-testid': 'attachment-image' })
      : h('a', { href: url, target: '_blank', rel: 'noopener', class: 'pdf', 'data-testid': 'attachment-link' }, `📄 ${name}`);
    if (content instanceof HTMLImageElement) content.addEventListener('load', onShown, { once: true });
    holder.replaceChildren(content, h('span', { class: 'muted' }, meta?.size_bytes ? formatBytes(Number(meta.size_bytes)) : ''));
    if (!(content instanceof HTMLImageElement)) onShown();
  } catch (err) {
    showFailure(ws, holder, hash, name, err instanceof Error ? err.message : 'download failed', onShown);
  }
}

function showFailure(ws: Or3Workspace, holder: HTMLElement, hash: string, name: string, reason: string, onShown: () => void) {
  holder.dataset.state = 'failed';
  holder.replaceChildren(
    h('span', { class: 'error', 'data-testid': 'attachment-failed' }, `📎 ${name}: could not be downloaded (${reason})`),
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        onclick: () => {
          failedDownloads.delete(hash);
          delete holder.dataset.state;
          holder.replaceChildren(h('div', { class: 'progress', 'data-progress': hash }));
          void showAttachment(ws, holder, hash, onShown);
        },
      },
      'Retry',
    ),
  );
  onShown();
}

function renderProgress(bar: HTMLElement, t: TransferProgress) {
  const pct = t.bytesTotal ? Math.round((t.bytesDone / t.bytesTotal) * 100) : 0;
  const fill = h('div', { class: 'bar' });
  fill.style.width = `${pct}%`; // a CSSOM write, which the page's CSP (no inline style attributes) allows
  bar.replaceChildren(fill, h('span', {}, `${t.direction === 'upload' ? 'Uploading' : 'Downloading'} ${pct}%${t.state === 'failed' ? ' (failed)' : ''}`));
  bar.dataset.state = t.state;
  bar.hidden = t.state === 'done' || t.state === 'failed';
}

export const safeParse = (value: string): string[] => {
  try {
    const parsed = JSON.parse(value);
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
};
