/**
 * The console's workspaces page (docs/admin.md "Workspaces"): search (deleted ones too), open a
 * workspace's page (workspace.ts), and import an export stream (a dry run first, if asked).
 */
import { h } from '../../src/dom';
import { api, cell, labelled, notice, report, table, type Json } from './ui';
import { workspacePage } from './workspace';

export async function workspaces(): Promise<Node> {
  const q = h('input', { type: 'search', maxlength: '40', 'aria-label': 'Search workspaces' });
  const deleted = h('input', { type: 'checkbox' });
  const list = h('div');
  const detail = h('div', { 'aria-live': 'polite' });
  const out = h('div', { 'aria-live': 'polite' });
  let offset = 0;
  const open = (w: Json) => report(detail, async () => (detail.replaceChildren(await workspacePage(w.id, refresh)), null));
  const refresh = async () => {
    const params = new URLSearchParams({ limit: '20', offset: String(offset), q: q.value.trim(), includeDeleted: String(deleted.checked) });
    const page = await api('GET', `/api/admin/workspaces?${params}`);
    const pager = h(
      'div',
      { class: 'actions' },
      h(
        'button',
        { disabled: offset === 0, onclick: () => ((offset = Math.max(0, offset - 20)), void report(out, async () => (await refresh(), null))) },
        'Previous',
      ),
      h(
        'button',
        { disabled: page.nextOffset === null, onclick: () => ((offset = page.nextOffset), void report(out, async () => (await refresh(), null))) },
        'Next',
      ),
    );
    list.replaceChildren(
      table(
        'workspaces',
        ['Name', 'Members', 'Id', 'State', ''],
        page.workspaces.map((w: Json) =>
          h(
            'tr',
            { 'data-workspace': w.id },
            cell(w.name),
            cell(String(w.memberCount)),
            cell(w.id),
            cell(w.deletedAt ? `deleted ${w.deletedAt.slice(0, 10)}` : 'live'),
            cell(h('button', { onclick: () => void open(w) }, 'Open')),
          ),
        ),
      ),
      pager,
    );
  };
  await refresh();
  const search = (e: Event) => (e.preventDefault(), (offset = 0), void report(out, async () => (await refresh(), null)));
  return h(
    'div',
    {},
    h('form', { class: 'row', role: 'search', onsubmit: search }, q, h('label', {}, deleted, ' include deleted'), h('button', { type: 'submit' }, 'Search')),
    out,
    list,
    detail,
    importForm(refresh),
  );
}

/** Import (POST /api/admin/import): the JSONL an export produced; the report says what was applied and skipped. */
function importForm(refresh: () => Promise<void>): Node {
  const file = h('input', { type: 'file', accept: '.jsonl,application/x-ndjson,application/json', required: true });
  const name = h('input', { type: 'text', maxlength: '100' });
  const dryRun = h('input', { type: 'checkbox', checked: true });
  const out = h('div', { 'aria-live': 'polite', 'data-testid': 'import-report' });
  const run = async () => {
    const chosen = file.files?.[0];
    if (!chosen) throw new Error('Choose an export file first');
    const params = new URLSearchParams({ dryRun: String(dryRun.checked) });
    if (name.value.trim()) params.set('name', name.value.trim());
    const r = await api('POST', `/api/admin/import?${params}`, undefined, chosen);
    const what = `${r.changes.applied} change(s), ${r.rows.applied} row(s), ${r.members.added} member(s) added, ${r.skippedCount} skipped`;
    return r.dryRun ? `Dry run of workspace ${r.workspaceId}: would apply ${what}. Nothing was written.` : `Imported into workspace ${r.workspaceId}: ${what}.`;
  };
  return h(
    'section',
    { 'aria-label': 'Import' },
    h('h2', {}, 'Import an export'),
    h(
      'form',
      { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void report(out, run, refresh)) },
      ...labelled('import-file', 'Export file', file),
      ...labelled('import-name', 'Name (optional)', name),
      h('label', {}, dryRun, ' dry run (write nothing)'),
      h('button', { type: 'submit' }, 'Import'),
    ),
    out,
    notice('An import never overwrites newer data; the report lists every skipped line and why.'),
  );
}
