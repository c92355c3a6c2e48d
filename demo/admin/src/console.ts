/**
 * The admin console at /admin (docs/admin.md "The console"): a small app over the admin API,
 * served by the Worker as static assets with the demo's strict CSP. Same-origin cookies carry
 * the session; every mutation sends `x-or3-admin-intent: admin` (ui.ts). All data goes into the
 * page through textContent (dom.ts), never as markup. This file is the shell: sign-in, the 403
 * page for non-admins, and the navigation between the pages beside it.
 */
import { h } from '../../src/dom';
import { auditPage } from './audit';
import { overview } from './overview';
import { api, notice } from './ui';
import { users } from './users';
import { webhooksPage } from './webhooks';
import { workspaces } from './workspaces';

const app = document.getElementById('app')!;

function show(...children: Node[]) {
  app.replaceChildren(...children);
}

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

const pages: Record<string, () => Promise<Node>> = { Overview: overview, Users: users, Workspaces: workspaces, Webhooks: webhooksPage, Audit: auditPage };

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

start().catch((err: Error) => show(notice(err.message, true)));
