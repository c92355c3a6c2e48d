/**
 * The page a setup link opens (`/setup#token=…`, printed by `npm run deploy`): creates the
 * deployment's first admin through `POST /api/setup/admin` (docs/auth.md "First admin"). The token
 * stays in the URL fragment, which browsers never send to the server or into its logs.
 */
import { h, replace } from './dom';

export async function renderSetup(app: HTMLElement, done: () => void) {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const status = await fetch('/api/setup')
    .then((r) => r.json() as Promise<{ needed: boolean; tokenRequired: boolean }>)
    .catch(() => null);
  const title = h('h1', {}, 'Create the first admin');
  const card = (...children: (Node | null)[]) => replace(app, h('main', { class: 'auth' }, h('section', { class: 'card' }, title, ...children)));
  if (!status?.needed) {
    card(h('p', { class: 'setup-status' }, 'Setup is complete: this deployment already has an admin. Sign in instead.'), h('a', { href: '/' }, 'Sign in'));
    return;
  }
  if (status.tokenRequired && !token) {
    card(h('p', { class: 'setup-status' }, 'Open the setup link that `npm run deploy` printed (or run `npm run setup-link`).'));
    return;
  }
  const error = h('p', { class: 'error', role: 'alert' });
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', placeholder: 'admin@example.com' });
  const password = h('input', {
    type: 'password',
    name: 'password',
    required: true,
    minLength: 12,
    autocomplete: 'new-password',
    placeholder: 'at least 12 characters',
  });
  const displayName = h('input', { type: 'text', name: 'displayName', autocomplete: 'name', placeholder: 'Your name' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create admin');
  const form = h(
    'form',
    {
      class: 'auth-form setup-form',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        submit.disabled = true;
        error.textContent = '';
        const body = {
          email: email.value,
          password: password.value,
          confirmPassword: password.value,
          ...(token ? { token } : {}),
          ...(displayName.value ? { displayName: displayName.value } : {}),
        };
        const res = await fetch('/api/setup/admin', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).catch(
          () => null,
        );
        submit.disabled = false;
        if (res?.status === 201) {
          history.replaceState(null, '', '/');
          done();
          return;
        }
        const answer = (await res?.json().catch(() => null)) as { message?: string } | null;
        error.textContent = answer?.message ?? 'The server could not be reached; try again.';
      },
    },
    h('label', {}, 'Email', email),
    h('label', {}, 'Password', password),
    h('label', {}, 'Name (optional)', displayName),
    submit,
    error,
  );
  card(
    h('p', { class: 'muted' }, 'This deployment has no admin yet. The account you create here becomes its deployment admin; the link then stops working.'),
    form,
  );
}
