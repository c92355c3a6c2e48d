/**
 * The console's audit page (docs/admin.md "Audit log"): a UTC date range and optional actor,
 * event (or family such as `admin.user.*`) and workspace filters, 10 to 200 events a page. The filters
 * go to the server as query values; what comes back is shown as text.
 */
import { h } from '../../src/dom';
import { api, cell, labelled, report, table, type Json } from './ui';

const today = () => new Date().toISOString().slice(0, 10);

export async function auditPage(): Promise<Node> {
  const from = h('input', { type: 'date', value: today(), required: true });
  const to = h('input', { type: 'date', value: today(), required: true });
  const actor = h('input', { type: 'text', maxlength: '128', autocomplete: 'off' });
  const event = h('input', { type: 'text', maxlength: '64', autocomplete: 'off', placeholder: 'admin.user.*' });
  const workspace = h('input', { type: 'text', maxlength: '128', autocomplete: 'off' });
  const size = h('select', {}, ...['10', '50', '200'].map((n) => h('option', { value: n, selected: n === '50' }, n)));
  const results = h('div', { 'aria-live': 'polite' });
  let offset = 0;
  const load = async () => {
    const PAGE = Number(size.value);
    const params = new URLSearchParams({ from: from.value, to: to.value, limit: String(PAGE), offset: String(offset) });
    for (const [name, input] of [
      ['actor', actor],
      ['event', event],
      ['workspace', workspace],
    ] as const)
      if (input.value.trim()) params.set(name, input.value.trim());
    const page = await api('GET', `/api/admin/audit?${params}`);
    const go = (to: number) => () => ((offset = to), void report(results, async () => (await load(), null)));
    results.replaceChildren(
      h('p', {}, page.events.length ? `Events ${offset + 1}–${offset + page.events.length}, oldest first` : 'No events match.'),
      table(
        'audit',
        ['Time', 'Event', 'Target', 'Actor'],
        (page.events as Json[]).map((e) =>
          h(
            'tr',
            {},
            cell(String(e.at ?? '')),
            cell(String(e.event ?? '')),
            cell(String(e.targetUserId ?? e.workspaceId ?? e.email ?? '')),
            cell(String(e.actorId ?? '')),
          ),
        ),
      ),
      h(
        'div',
        { class: 'actions' },
        h('button', { disabled: offset === 0, onclick: go(Math.max(0, offset - PAGE)) }, 'Previous page'),
        h('button', { disabled: page.nextOffset === null, onclick: go(page.nextOffset) }, 'Next page'),
      ),
    );
    return null;
  };
  const search = (e: Event) => (e.preventDefault(), (offset = 0), void report(results, load));
  await load();
  return h(
    'div',
    {},
    h(
      'form',
      { class: 'row', role: 'search', 'aria-label': 'Filter the audit log', onsubmit: search },
      ...labelled('audit-from', 'From', from),
      ...labelled('audit-to', 'To', to),
      ...labelled('audit-actor', 'Actor id', actor),
      ...labelled('audit-event', 'Event', event),
      ...labelled('audit-workspace', 'Workspace id', workspace),
      ...labelled('audit-size', 'Per page', size),
      h('button', { type: 'submit' }, 'Filter'),
    ),
    results,
  );
}
