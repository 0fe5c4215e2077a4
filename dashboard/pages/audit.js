// The audit log: every admin action (who, what, when, from where), newest first,
// with cursor pagination.

import {api} from '../api.js';
import {h, clear, timeEl, pageHeader, section, tableWrap, errorBox, emptyRow, button, badge, longText, qs, fmtNum} from '../ui.js';

const PAGE = 50;

export async function render(root, ctx) {
  const stack = [null];
  let next = null;
  const tbody = h('tbody');
  const status = h('p', {class: 'list-status muted', 'aria-live': 'polite'});
  const errBox = h('div');
  const prev = button('← Newer', () => go(-1), {class: 'btn-small', 'data-action': 'prev', disabled: true});
  const nextBtn = button('Older →', () => go(+1), {class: 'btn-small', 'data-action': 'next', disabled: true});
  const refresh = button('Refresh', () => {
    stack.length = 1;
    load();
  }, {class: 'btn-small', 'data-action': 'refresh'});
  const t = h('table', {class: 'table table-audit'}, h('thead', null, h('tr', null,
    ['When', 'Who', 'Via', 'Action', 'Path', 'Status', 'From', 'User agent'].map((x) => h('th', {scope: 'col'}, x)))), tbody);
  root.append(pageHeader('Audit log'),
    section('Admin actions, newest first', errBox, h('div', {class: 'pager'}, prev, nextBtn, refresh, status), tableWrap(t, 'Audit log')));

  async function load() {
    prev.disabled = true;
    nextBtn.disabled = true;
    try {
      const data = await api.get(`/v1/audit${qs({limit: PAGE, cursor: stack[stack.length - 1]})}`, {signal: ctx.signal});
      if (!ctx.alive) return;
      errBox.replaceChildren();
      const entries = (data && data.entries) || [];
      next = data ? data.next_cursor || null : null;
      const rows = entries.map((e) => h('tr', null,
        h('td', null, timeEl(e.at)),
        h('td', {title: e.actor ? `token ${e.actor}` : ''}, e.actor_name || e.actor || h('span', {class: 'muted'}, '–')),
        h('td', null, e.via || '–'),
        h('td', {class: 'mono'}, e.action || '–'),
        h('td', {class: 'mono wrap'}, e.path || '–'),
        h('td', {class: 'num'}, badge(String(e.status ?? '–'), e.status >= 400 ? 'bad' : 'good')),
        h('td', null, e.ip || '–'),
        h('td', {class: 'ua'}, e.user_agent ? longText(e.user_agent, 40) : '–')));
      if (!rows.length) rows.push(emptyRow(8, stack.length > 1 ? 'No older entries.' : 'No admin action yet.'));
      clear(tbody).append(...rows);
      status.textContent = `page ${stack.length} · ${fmtNum(entries.length)} entr${entries.length === 1 ? 'y' : 'ies'}`;
    } catch (err) {
      if (!ctx.alive || err.name === 'AbortError') return;
      errBox.replaceChildren(errorBox(err));
    } finally {
      prev.disabled = stack.length <= 1;
      nextBtn.disabled = !next;
    }
  }

  async function go(dir) {
    if (dir > 0) {
      if (!next) return;
      stack.push(next);
    } else {
      if (stack.length <= 1) return;
      stack.pop();
    }
    await load();
  }

  await load();
}
