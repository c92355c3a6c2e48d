/**
 * The console's users page (docs/admin.md "Users"): search, and every account action with the
 * admin API behind it. Deleting asks in a dialog what happens to the workspaces the user alone
 * owns: transferred to a user the admin names, or deleted (restorable by an admin).
 */
import { h } from '../../src/dom';
import { api, ask, cell, labelled, report, table, type Json } from './ui';

export async function users(): Promise<Node> {
  const q = h('input', { id: 'user-q', type: 'search', maxlength: '40', 'aria-label': 'Search users' });
  const results = h('div');
  const out = h('div', { 'aria-live': 'polite' });
  const search = async () => {
    const { users: list } = await api('GET', `/api/admin/users?limit=50&q=${encodeURIComponent(q.value.trim())}`);
    results.replaceChildren(
      table(
        'users',
        ['Email', 'State', 'Id', 'Actions'],
        list.map((u: Json) => userRow(u, out, search)),
      ),
    );
  };
  await search();
  return h(
    'div',
    {},
    h(
      'form',
      { class: 'row', role: 'search', onsubmit: (e: Event) => (e.preventDefault(), void report(out, async () => (await search(), null))) },
      q,
      h('button', { type: 'submit' }, 'Search'),
    ),
    out,
    results,
  );
}

/** The user a transfer names: an exact id, or the one account whose email matches exactly. */
async function findUser(who: string): Promise<Json> {
  const { users: found } = await api('GET', `/api/admin/users?limit=20&q=${encodeURIComponent(who)}`);
  const match = (found as Json[]).find((u) => u.id === who || u.email === who.toLowerCase());
  if (!match) throw new Error(`No user is ${who}`);
  return match;
}

async function deleteUser(u: Json, name: string, path: string): Promise<string> {
  const { soleOwnedWorkspaces: sole, memberships } = await api('GET', path);
  const names = (sole as Json[]).map((w) => w.name).join(', ');
  const transfer = h('input', { type: 'radio', name: 'disposition', value: 'transfer', checked: true });
  const remove = h('input', { type: 'radio', name: 'disposition', value: 'delete' });
  const to = h('input', { type: 'text', maxlength: '320', autocomplete: 'off', placeholder: 'email or user id' });
  const choice = sole.length
    ? [
        h(
          'fieldset',
          {},
          h('legend', {}, `${sole.length} workspace(s) owned only by ${name}: ${names}`),
          h('label', {}, transfer, ' Transfer them to '),
          ...labelled('transfer-to', 'New owner', to),
          h('label', {}, remove, ' Delete them (an admin can restore them)'),
        ),
      ]
    : [];
  const message = `Delete ${name}? Their sessions, identities and ${memberships} membership(s) go.`;
  if (!(await ask(`Delete ${name}`, message, 'Delete user', ...choice))) return 'Nothing was deleted.';
  let body: Json = { delete: true };
  if (sole.length && transfer.checked) body = { transferTo: (await findUser(to.value.trim())).id };
  const r = await api('DELETE', path, body);
  return r.transferredTo
    ? `${name} was deleted; ${r.workspaces.length} workspace(s) they alone owned now belong to ${to.value.trim()}.`
    : `${name} was deleted; ${r.workspaces.length} workspace(s) they alone owned were deleted.`;
}

function userRow(u: Json, out: HTMLElement, refresh: () => Promise<void>) {
  const act = (label: string, confirmText: string | null, run: () => Promise<string>, danger = false) =>
    h(
      'button',
      {
        class: danger ? 'danger' : undefined,
        onclick: () => {
          if (confirmText && !confirm(confirmText)) return;
          void report(out, run, refresh);
        },
      },
      label,
    );
  const name = u.email ?? u.displayName ?? u.id;
  const path = `/api/admin/users/${encodeURIComponent(u.id)}`;
  return h(
    'tr',
    { 'data-user': u.email ?? u.id },
    cell(name),
    cell([u.disabled ? 'disabled' : 'active', u.deploymentAdmin ? 'admin' : ''].filter(Boolean).join(', ')),
    cell(u.id),
    h(
      'td',
      { class: 'actions' },
      u.disabled
        ? act('Enable', null, async () => (await api('POST', `${path}/enable`), `${name} may sign in again.`))
        : act(
            'Disable',
            `Disable ${name}? Every session and socket of theirs ends now.`,
            async () => (await api('POST', `${path}/disable`), `${name} is disabled.`),
            true,
          ),
      act('Sign out', `End every session of ${name}?`, async () => (await api('POST', `${path}/sign-out`), `${name} is signed out everywhere.`)),
      act('Reset password', `Reset the password of ${name}? Their sessions end now and you get a one-time link.`, async () => {
        const r = await api('POST', `${path}/reset-password`);
        return `One-time reset link for ${name} (shown once, valid until ${r.expiresAt}): ${r.resetUrl}`;
      }),
      u.deploymentAdmin
        ? act('Revoke admin', `Take deployment admin away from ${name}?`, async () => (await api('DELETE', `${path}/admin`), `${name} is no longer an admin.`))
        : act('Make admin', `Make ${name} a deployment admin?`, async () => (await api('PUT', `${path}/admin`), `${name} is a deployment admin.`)),
      act('Delete', null, () => deleteUser(u, name, path), true),
    ),
  );
}
