/**
 * Redeems a one-time password-reset link (docs/admin.md "Account actions"): the token from the
 * link's query goes to POST /api/basic-auth/reset-password with the new password.
 */
import { h } from '../../src/dom';

const app = document.getElementById('app')!;
const token = new URLSearchParams(location.search).get('token') ?? '';
const password = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', minlength: '12', required: true });
const confirmation = h('input', { id: 'confirm-password', type: 'password', autocomplete: 'new-password', minlength: '12', required: true });
const status = h('p', { role: 'status' });

async function redeem(e: Event) {
  e.preventDefault();
  const res = await fetch('/api/basic-auth/reset-password', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token, newPassword: password.value, confirmNewPassword: confirmation.value }),
  });
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  status.textContent = res.ok ? 'Your password was changed. You can sign in with it now.' : `Could not change the password: ${body.message ?? res.status}`;
}

app.replaceChildren(
  h('h1', {}, 'Choose a new password'),
  token ? h('p', {}, 'At least 12 characters. This link works once.') : h('p', { class: 'notice error' }, 'This page needs the link you were given.'),
  h(
    'form',
    { class: 'row', onsubmit: (e: Event) => void redeem(e) },
    h('label', { for: 'new-password' }, 'New password'),
    password,
    h('label', { for: 'confirm-password' }, 'Repeat it'),
    confirmation,
    h('button', { type: 'submit' }, 'Set password'),
  ),
  status,
);
