// The login page: an API token, sent once to POST /v1/session, which answers with an
// HttpOnly cookie. The token is never stored by the page (no localStorage).

import {login} from '../api.js';
import {h, errorText} from '../ui.js';

export function render(root, {message, done}) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true,
    spellcheck: 'false', placeholder: 'hop_…', 'aria-describedby': 'token-help',
  });
  const err = h('p', {class: 'form-error', role: 'alert', id: 'login-error'});
  const submit = h('button', {type: 'submit', class: 'btn btn-primary'}, 'Log in');
  const form = h('form', {class: 'login-form', novalidate: true},
    h('label', {for: 'token'}, 'API token'),
    input,
    h('p', {id: 'token-help', class: 'muted small'},
      'A token from ', h('code', null, 'hopper token create --scope read'), ' (or ', h('code', null, '--scope admin'),
      ' to act on jobs). It is exchanged for a session cookie and is not kept by this page.'),
    err,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    err.textContent = '';
    if (!token) {
      err.textContent = 'Enter a token.';
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await login(token);
      input.value = '';
      done();
    } catch (e2) {
      err.textContent = e2.status === 401 ? `Login failed: ${errorText(e2)}` : errorText(e2);
      input.select();
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('div', {class: 'login card'},
    h('h1', {tabindex: -1}, 'Log in to Hopper'),
    message ? h('p', {class: 'banner banner-info', role: 'status'}, message) : null,
    form));
  input.focus();
}
