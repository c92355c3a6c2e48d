/**
 * The console's webhooks page (docs/webhooks.md, docs/admin.md "Webhooks"): the deployment's
 * hooks (admin.* events) at /api/admin/webhooks — list, create (the signing secret shown once),
 * enable/disable, send a test, see each hook's deliveries and redeliver one, delete.
 */
import { h } from '../../src/dom';
import { api, ask, cell, labelled, notice, report, table, type Json } from './ui';

const BASE = '/api/admin/webhooks';
const when = (ms: number | null) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '—');

export async function webhooksPage(): Promise<Node> {
  const root = h('div');
  const out = h('div', { 'aria-live': 'polite' });
  const deliveries = h('div', { 'aria-live': 'polite' });
  const render = async () => {
    const { webhooks } = await api('GET', BASE);
    root.replaceChildren(
      out,
      table(
        'webhooks',
        ['URL', 'Events', 'State', ''],
        (webhooks as Json[]).map((w) => hookRow(w, out, deliveries, render)),
      ),
      deliveries,
      createForm(out, render),
    );
  };
  await render();
  return root;
}

function hookRow(w: Json, out: HTMLElement, deliveries: HTMLElement, render: () => Promise<void>) {
  const path = `${BASE}/${encodeURIComponent(w.id)}`;
  const showDeliveries = async () => {
    const { deliveries: list } = await api('GET', `${path}/deliveries?limit=50`);
    deliveries.replaceChildren(
      h('h2', {}, `Deliveries to ${w.url}`),
      table(
        'deliveries',
        ['Event', 'Status', 'Attempts', 'Last answer', 'Last attempt', ''],
        (list as Json[]).map((d) =>
          h(
            'tr',
            {},
            cell(d.event),
            cell(d.status),
            cell(String(d.attempts)),
            cell(d.lastResponseCode ? String(d.lastResponseCode) : (d.lastError ?? '—')),
            cell(when(d.lastAttemptAt)),
            cell(
              h(
                'button',
                {
                  onclick: () =>
                    void report(
                      out,
                      async () => (await api('POST', `${path}/deliveries/${encodeURIComponent(d.id)}/redeliver`), 'Queued again.'),
                      showDeliveries,
                    ),
                },
                'Redeliver',
              ),
            ),
          ),
        ),
      ),
    );
    return null;
  };
  // A delivery is logged at its first attempt (the Queue's consumer reports it), so the list
  // shows the test a few seconds later, not at once.
  const test = async () => {
    await api('POST', `${path}/test`);
    return `A test event (webhook.ping) is queued for ${w.url}; it shows under Deliveries after its first attempt.`;
  };
  const toggle = async () => (await api('PATCH', path, { enabled: !w.enabled }), w.enabled ? 'Disabled.' : 'Enabled.');
  const remove = async () => {
    if (!(await ask('Delete webhook', `${w.url} receives nothing more; its delivery log goes with it.`, 'Delete'))) return null;
    await api('DELETE', path);
    deliveries.replaceChildren();
    return 'The webhook is deleted.';
  };
  const state = w.enabled
    ? w.failingSince
      ? `failing since ${when(w.failingSince)}`
      : 'enabled'
    : `disabled${w.disabledReason ? ` (${w.disabledReason})` : ''}`;
  return h(
    'tr',
    { 'data-webhook': w.url },
    cell(w.url),
    cell((w.events as string[]).join(', ')),
    cell(state),
    h(
      'td',
      { class: 'actions' },
      h('button', { onclick: () => void report(out, test) }, 'Test'),
      h('button', { onclick: () => void report(out, showDeliveries) }, 'Deliveries'),
      h('button', { onclick: () => void report(out, toggle, render) }, w.enabled ? 'Disable' : 'Enable'),
      h('button', { class: 'danger', onclick: () => void report(out, remove, render) }, 'Delete'),
    ),
  );
}

function createForm(out: HTMLElement, render: () => Promise<void>): Node {
  const url = h('input', { type: 'url', maxlength: '2048', required: true, placeholder: 'https://…' });
  const events = h('input', { type: 'text', maxlength: '400', value: 'admin.*' });
  const create = async () => {
    const list = events.value
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean);
    const { webhook, secret } = await api('POST', BASE, { url: url.value.trim(), events: list });
    await render();
    // Only this answer carries the secret: shown once, after the re-render so it stays visible.
    out.replaceChildren(notice(`Webhook for ${webhook.url} created. Its signing secret (shown once): ${secret}`));
    return null;
  };
  return h(
    'section',
    { 'aria-label': 'New webhook' },
    h('h2', {}, 'New webhook'),
    h(
      'form',
      { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void report(out, create)) },
      ...labelled('hook-url', 'URL', url),
      ...labelled('hook-events', 'Events (comma-separated)', events),
      h('button', { type: 'submit' }, 'Create webhook'),
    ),
    h('p', { class: 'hint' }, "Deployment events: admin.* and the others docs/webhooks.md lists. A workspace's own hooks are managed by its owners."),
  );
}
