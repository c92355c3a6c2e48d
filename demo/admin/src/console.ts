/**
 * The admin console at /admin (docs/admin.md "The console"): a small page over the admin API,
 * served by the Worker as static assets with the demo's strict CSP. Same-origin cookies carry
 * the session; every mutation sends `x-or3-admin-intent: admin`. All data goes into the page
 * through textContent (dom.ts), never as markup.
 */
import { h } from '../../src/dom';

const app = document.getElementById('app')!;
type Json = Record<string, any>;

async function api(method: string, path: string, body?: unknown): Promise<Json> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-or3-admin-intent'] = 'admin';
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = (await res.json().catch(() => ({}))) as Json;
  if (!res.ok) throw new Error(`${res.status}: ${data.message ?? data.error ?? res.statusText}`);
  return data;
}

function show(...children: Node[]) {
  app.replaceChildren(...children);
}
const notice = (text: string, error = false) => h('p', { class: error ? 'notice error' : 'notice', role: error ? 'alert' : 'status' }, text);

async function start() {
  const { session } = await api('GET', '/api/auth/session');
  if (!session) return showSignIn();
  if (!session.deploymentAdmin) return showForbidden(session.user?.email ?? session.user?.id ?? 'this account');
  showConsole(session.user?.email ?? '');
}

function showSignIn(message?: string) {
  const email = h('input', { id: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h(
    'form',
    { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void signIn(email.value, password.value)) },
    h('label', { for: 'email' }, 'Email'),
    email,
    h('label', { for: 'password' }, 'Password'),
    password,
    h('button', { type: 'submit' }, 'Sign in'),
  );
  show(h('h1', {}, 'or3-edge admin'), message ? notice(message, true) : h('p', {}, 'Sign in as a deployment admin.'), form);
}

async function signIn(email: string, password: string) {
  const res = await fetch('/api/basic-auth/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (!res.ok) return showSignIn('Invalid credentials');
  await start();
}

function showForbidden(who: string) {
  document.title = '403 — or3-edge admin';
  show(
    h('h1', {}, '403 — not a deployment admin'),
    h('p', { 'data-testid': 'forbidden' }, `You are signed in as ${who}, which is not a deployment admin. Ask an admin to grant access.`),
    h('button', { onclick: () => void signOut() }, 'Sign out'),
  );
}

async function signOut() {
  await fetch('/api/basic-auth/sign-out', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  showSignIn();
}

const pages: Record<string, () => Promise<Node>> = { Overview: overview, Users: users, Workspaces: workspaces, Audit: auditPage };

function showConsole(who: string, page = 'Overview') {
  const body = h('section', { 'aria-label': page });
  const nav = h(
    'nav',
    { 'aria-label': 'Console' },
    ...Object.keys(pages).map((name) => h('button', { 'aria-current': name === page ? 'page' : undefined, onclick: () => showConsole(who, name) }, name)),
    h('button', { onclick: () => void signOut() }, 'Sign out'),
  );
  show(h('h1', {}, 'or3-edge admin'), h('p', {}, `Signed in as ${who}`), nav, body);
  pages[page]!()
    .then((node) => body.replaceChildren(node))
    .catch((err: Error) => body.replaceChildren(notice(err.message, true)));
}

async function overview(): Promise<Node> {
  const [metrics, health] = await Promise.all([api('GET', '/api/admin/metrics'), api('GET', '/api/health?deep=true').catch(() => ({ status: 'unreachable' }))]);
  const pick = [
    'or3_users_total',
    'or3_workspaces_total',
    'or3_sync_ops_pushed_today',
    'or3_sync_ops_pulled_today',
    'or3_sync_bytes_in_today',
    'or3_sync_bytes_out_today',
  ];
  return h(
    'div',
    {},
    h('p', {}, `Health: ${health.status}`),
    h(
      'div',
      { class: 'cards' },
      ...pick.map((k) => h('div', { class: 'card', 'data-metric': k }, h('b', {}, String(metrics[k] ?? 0)), k.replace(/^or3_/, '').replace(/_/g, ' '))),
    ),
  );
}

async function users(): Promise<Node> {
  const q = h('input', { id: 'user-q', type: 'search', maxlength: '40', 'aria-label': 'Search users' });
  const results = h('div');
  const out = h('div', { 'aria-live': 'polite' });
  const search = async () => {
    const { users: list } = await api('GET', `/api/admin/users?limit=50&q=${encodeURIComponent(q.value.trim())}`);
    results.replaceChildren(
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Email'), h('th', {}, 'State'), h('th', {}, 'Id'), h('th', {}, 'Actions'))),
        h('tbody', {}, ...list.map((u: Json) => userRow(u, out, search))),
      ),
    );
  };
  await search();
  return h(
    'div',
    {},
    h('form', { class: 'row', role: 'search', onsubmit: (e: Event) => (e.preventDefault(), void search()) }, q, h('button', { type: 'submit' }, 'Search')),
    out,
    results,
  );
}

function userRow(u: Json, out: HTMLElement, refresh: () => Promise<void>) {
  const act = (label: string, confirmText: string | null, run: () => Promise<string>, danger = false) =>
    h(
      'button',
      {
        class: danger ? 'danger' : undefined,
        onclick: async () => {
          if (confirmText && !confirm(confirmText)) return;
          try {
            const said = await run();
            await refresh(); // the row shows the new state before the notice says so
            out.replaceChildren(notice(said));
          } catch (err) {
            out.replaceChildren(notice((err as Error).message, true));
          }
        },
      },
      label,
    );
  const name = u.email ?? u.displayName ?? u.id;
  const path = `/api/admin/users/${encodeURIComponent(u.id)}`;
  return h(
    'tr',
    { 'data-user': u.email ?? u.id },
    h('td', {}, name),
    h('td', {}, [u.disabled ? 'disabled' : 'active', u.deploymentAdmin ? 'admin' : ''].filter(Boolean).join(', ')),
    h('td', {}, u.id),
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
      act(
        'Delete',
        null,
        async () => {
          const { soleOwnedWorkspaces: sole, memberships } = await api('GET', path);
          const owned = sole.length
            ? `${sole.length} workspace(s) owned only by ${name} will be deleted (restorable by an admin): ${sole.map((w: Json) => w.name).join(', ')}. `
            : '';
          if (!confirm(`Delete ${name}? ${owned}Their sessions, identities and ${memberships} membership(s) go.`)) return 'Nothing was deleted.';
          const r = await api('DELETE', path, { delete: true });
          return `${name} was deleted; ${r.workspaces.length} workspace(s) they alone owned were deleted.`;
        },
        true,
      ),
    ),
  );
}

async function workspaces(): Promise<Node> {
  const { workspaces: list } = await api('GET', '/api/admin/workspaces?limit=50');
  const detail = h('div', { 'aria-live': 'polite' });
  const usage = async (w: Json) => {
    const m = await api('GET', `/api/admin/metrics/workspaces/${encodeURIComponent(w.id)}`);
    const rows = Object.entries(m.days as Record<string, Json>).map(([day, c]) =>
      h(
        'tr',
        {},
        h('td', {}, day.slice(0, 10)),
        h('td', {}, String(c.ops_pushed ?? 0)),
        h('td', {}, String(c.ops_pulled ?? 0)),
        h('td', {}, String(c.bytes_in ?? 0)),
      ),
    );
    detail.replaceChildren(
      h('h2', {}, `Usage of ${w.name}`),
      h(
        'table',
        { 'data-testid': 'usage' },
        h('tr', {}, h('th', {}, 'Day'), h('th', {}, 'Ops pushed'), h('th', {}, 'Ops pulled'), h('th', {}, 'Bytes in')),
        ...rows,
      ),
    );
  };
  return h(
    'div',
    {},
    h(
      'table',
      {},
      h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Members'), h('th', {}, 'Id'), h('th', {}, '')),
      ...list.map((w: Json) =>
        h(
          'tr',
          {},
          h('td', {}, w.name),
          h('td', {}, String(w.memberCount)),
          h('td', {}, w.id),
          h('td', {}, h('button', { onclick: () => void usage(w) }, 'Usage')),
        ),
      ),
    ),
    detail,
  );
}

async function auditPage(): Promise<Node> {
  const { events } = await api('GET', '/api/admin/audit?limit=200');
  const recent = [...(events as Json[])].reverse().slice(0, 100);
  return h(
    'table',
    { 'data-testid': 'audit' },
    h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Event'), h('th', {}, 'Target'), h('th', {}, 'Actor')),
    ...recent.map((e) =>
      h(
        'tr',
        {},
        h('td', {}, String(e.time ?? e.at ?? '')),
        h('td', {}, String(e.event ?? '')),
        h('td', {}, String(e.targetUserId ?? e.workspaceId ?? '')),
        h('td', {}, String(e.actorId ?? '')),
      ),
    ),
  );
}

start().catch((err: Error) => show(notice(err.message, true)));
