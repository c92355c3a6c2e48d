/**
 * One workspace in the console (docs/admin.md "Workspaces"): its GC and archive state and usage
 * (GET /api/admin/workspaces/:id, one read), members and roles (the last owner stays: the 409's
 * message is shown), invites (the link shown once), and export, fork, delete and restore.
 */
import { h } from '../../src/dom';
import { barChart, dayLabel, DAY_MS, lastBuckets, seriesOf } from './chart';
import { api, ask, cell, formatBytes, labelled, report, table, type Json } from './ui';

const ROLES = ['owner', 'editor', 'viewer'];
const EXPIRY: [string, number][] = [
  ['1 hour', 3600],
  ['1 day', 86_400],
  ['7 days', 7 * 86_400],
  ['30 days', 30 * 86_400],
];

const select = (options: [string, string][], value?: string) =>
  h('select', {}, ...options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));

export async function workspacePage(id: string, refreshList: () => Promise<void>): Promise<Node> {
  const root = h('section', { 'aria-label': 'Workspace', 'data-testid': 'workspace' });
  const out = h('div', { 'aria-live': 'polite' });
  const base = `/api/admin/workspaces/${encodeURIComponent(id)}`;
  const render = async () => {
    const view = await api('GET', base);
    root.replaceChildren(
      h('h2', {}, `Workspace ${view.workspace.name}`),
      out,
      actions(view, base, out, render, refreshList),
      stateTable(view),
      usage(view),
      members(view, out, render),
      invites(view, out, render),
    );
  };
  await render();
  return root;
}

function actions(view: Json, base: string, out: HTMLElement, render: () => Promise<void>, refreshList: () => Promise<void>): Node {
  const w = view.workspace;
  const fork = async () => {
    if (!(await ask(`Fork ${w.name}`, `A new workspace, owned by you, gets ${w.name}'s whole history. ${w.name} is not changed.`, 'Fork'))) return null;
    const r = await api('POST', `${base}/fork`, {});
    return `Forked into workspace ${r.id} (${r.imported} change(s) replayed).`;
  };
  const remove = async () => {
    const message = `Every member loses access at once and their sockets close. An admin can restore it; nothing is erased.`;
    if (!(await ask(`Delete ${w.name}`, message, 'Delete workspace'))) return null;
    await api('DELETE', base);
    return `${w.name} is deleted.`;
  };
  const restore = async () => (await api('POST', `${base}/restore`), `${w.name} is restored.`);
  const after = async () => (await render(), await refreshList());
  return h(
    'div',
    { class: 'actions' },
    h('a', { class: 'button', href: `${base}/export`, download: `${w.id}.jsonl` }, 'Export (JSONL)'),
    h('button', { onclick: () => void report(out, fork, refreshList) }, 'Fork'),
    w.deletedAt
      ? h('button', { onclick: () => void report(out, restore, after) }, 'Restore')
      : h('button', { class: 'danger', onclick: () => void report(out, remove, after) }, 'Delete'),
  );
}

function stateTable(view: Json): Node {
  const s = view.state;
  const rows: [string, string][] = [
    ['State', view.workspace.deletedAt ? `deleted at ${view.workspace.deletedAt}` : 'live'],
    ['Head version', String(s.headVersion)],
    ['History archived to R2 through version', String(s.archivedThrough)],
    ['Tombstones collected through version', String(s.tombstonesCollectedThrough)],
    ['Next retention GC', s.nextGcAt ?? 'nothing scheduled'],
    ['Last blob GC', s.lastBlobGcAt ?? 'never'],
    ['Sync data', formatBytes(s.syncBytes)],
    ['Blobs', `${s.blobCount} (${formatBytes(s.usedBytes)})`],
    ['Sockets open now', String(s.socketsOpen)],
  ];
  return h(
    'table',
    { 'data-testid': 'workspace-state' },
    h('caption', {}, 'GC, archive and usage'),
    h('tbody', {}, ...rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), cell(v)))),
  );
}

function usage(view: Json): Node {
  const days = view.metrics.days as Record<string, Json>;
  const starts = lastBuckets(30, DAY_MS);
  const rows = Object.entries(days)
    .sort(([a], [b]) => b.localeCompare(a))
    .map(([day, c]) =>
      h(
        'tr',
        {},
        cell(day.slice(0, 10)),
        cell(String(c.ops_pushed ?? 0)),
        cell(String(c.ops_pulled ?? 0)),
        cell(formatBytes(c.bytes_in ?? 0)),
        cell(String(c.peak_sockets ?? 0)),
      ),
    );
  return h(
    'div',
    {},
    h('h3', {}, 'Usage'),
    h('div', { class: 'charts' }, barChart('Ops pushed per day (30 days)', seriesOf(days, starts, 'ops_pushed', dayLabel), 'chart-workspace-ops')),
    table('usage', ['Day', 'Ops pushed', 'Ops pulled', 'Bytes in', 'Most sockets'], rows),
  );
}

function members(view: Json, out: HTMLElement, render: () => Promise<void>): Node {
  const id = view.workspace.id as string;
  const rows = (view.members as Json[]).map((m) => {
    const who = m.email ?? m.displayName ?? m.userId;
    const role = select(
      ROLES.map((r) => [r, r]),
      m.role,
    );
    role.setAttribute('aria-label', `Role of ${who}`);
    const setRole = async () => {
      await api('POST', '/api/admin/workspace/members/set-role', { workspaceId: id, userId: m.userId, role: role.value });
      return `${who} is now ${role.value}.`;
    };
    const remove = async () => {
      if (!(await ask(`Remove ${who}`, `${who} loses access to ${view.workspace.name} now; their sockets close.`, 'Remove'))) return null;
      await api('DELETE', `/api/admin/workspaces/${encodeURIComponent(id)}/members/${encodeURIComponent(m.userId)}`);
      return `${who} was removed.`;
    };
    return h(
      'tr',
      { 'data-member': who },
      cell(who),
      cell(role),
      h(
        'td',
        { class: 'actions' },
        h('button', { onclick: () => void report(out, setRole, render) }, 'Save role'),
        h('button', { class: 'danger', onclick: () => void report(out, remove, render) }, 'Remove'),
      ),
    );
  });
  const who = h('input', { type: 'text', maxlength: '320', required: true, autocomplete: 'off' });
  const role = select(
    ROLES.map((r) => [r, r]),
    'viewer',
  );
  const add = async () => {
    await api('POST', '/api/admin/workspace/members/upsert', { workspaceId: id, emailOrProviderId: who.value.trim(), role: role.value });
    return `${who.value.trim()} is a member (${role.value}).`;
  };
  return h(
    'div',
    {},
    h('h3', {}, 'Members'),
    table('members', ['Member', 'Role', ''], rows),
    h(
      'form',
      { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void report(out, add, render)) },
      ...labelled('member-who', 'Add by email or id', who),
      ...labelled('member-role', 'Role', role),
      h('button', { type: 'submit' }, 'Add member'),
    ),
  );
}

function invites(view: Json, out: HTMLElement, render: () => Promise<void>): Node {
  const id = view.workspace.id as string;
  const link = h('div', { 'aria-live': 'polite', 'data-testid': 'invite-link' });
  const rows = (view.invites as Json[]).map((i) =>
    h(
      'tr',
      { 'data-invite': i.email ?? i.id },
      cell(i.email ?? '(no email)'),
      cell(i.role),
      cell(i.expiresAt),
      cell(
        h(
          'button',
          {
            class: 'danger',
            onclick: () =>
              void report(
                out,
                async () => {
                  if (!(await ask('Revoke invite', `The invite for ${i.email ?? i.id} stops working now.`, 'Revoke'))) return null;
                  await api('POST', '/api/admin/workspace/invites/revoke', { workspaceId: id, inviteId: i.id });
                  return `The invite for ${i.email ?? i.id} is revoked.`;
                },
                render,
              ),
          },
          'Revoke',
        ),
      ),
    ),
  );
  const email = h('input', { type: 'email', maxlength: '320', required: true });
  const role = select(
    ROLES.map((r) => [r, r]),
    'viewer',
  );
  const expiry = select(
    EXPIRY.map(([label, s]) => [String(s), label]),
    String(7 * 86_400),
  );
  const create = async () => {
    const { invite } = await api('POST', '/api/admin/workspace/invites/create', {
      workspaceId: id,
      email: email.value.trim(),
      role: role.value,
      expiresInSeconds: Number(expiry.value),
    });
    await render();
    // After the re-render: the link is in this answer only and is shown once, here.
    const url = new URL(invite.inviteUrl, location.origin).toString();
    document.querySelector('[data-testid="invite-link"]')?.replaceChildren(h('p', { class: 'notice' }, `Invite link for ${invite.email} (shown once): ${url}`));
    return null;
  };
  return h(
    'div',
    {},
    h('h3', {}, 'Invites'),
    link,
    table('invites', ['Email', 'Role', 'Expires', ''], rows),
    h(
      'form',
      { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void report(out, create)) },
      ...labelled('invite-email', 'Invite email', email),
      ...labelled('invite-role', 'Invite role', role),
      ...labelled('invite-expiry', 'Expires in', expiry),
      h('button', { type: 'submit' }, 'Create invite'),
    ),
  );
}
