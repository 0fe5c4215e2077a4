// Workers: each worker process (host, pid, queues, plugins, uptime, how many jobs it
// runs), quiet and stop; #/workers/ID pages through the jobs one worker runs now.

import {api, enc, isAdmin} from '../api.js';
import {
  h, clear, fill, fmtNum, fmtDuration, timeEl, pageHeader, section, tableWrap, errorBox, emptyRow, badge,
  button, busy, confirmDialog, notify, link,
} from '../ui.js';

const PAGE = 50;

export async function render(root, ctx, params) {
  if (params && params[0]) return renderOne(root, ctx, params[0]);
  const admin = isAdmin();
  const box = h('div');
  root.append(pageHeader('Workers'), section('Worker processes', box));

  async function load() {
    try {
      const data = await api.get('/v1/workers', {signal: ctx.signal});
      if (!ctx.alive) return;
      keepFocus(box, () => show((data && data.workers) || []));
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') clear(box).append(errorBox(err));
    }
  }

  function show(ws) {
    if (!ws.length) {
      clear(box).append(h('div', {class: 'empty-state'}, h('p', null, 'No worker is running.'),
        h('p', {class: 'muted'}, 'Start one with ', h('code', null, 'hopper worker --queues QUEUE --plugins PLUGIN.so'), '.')));
      return;
    }
    const rows = ws.map((w) => {
      const running = typeof w.running === 'number' ? w.running : (w.jobs || []).length;
      return h('tr', {dataset: {worker: w.id}},
        h('th', {scope: 'row'}, link(`#/workers/${enc(w.id)}`, w.id, {class: 'mono', 'data-focus-key': `w:${w.id}`})),
        h('td', null, w.host || '–'),
        h('td', {class: 'num'}, String(w.pid ?? '–')),
        h('td', null, stateOf(w)),
        h('td', null, (w.queues || []).join(', ') || '–'),
        h('td', null, plugins(w)),
        h('td', {title: w.started_at ? `started ${w.started_at}` : ''}, w.started_at ? fmtDuration(Date.now() - new Date(w.started_at)) : '–'),
        h('td', {class: 'num'}, `${fmtNum(running)} / ${fmtNum(w.threads)}`),
        admin ? h('td', {class: 'actions'}, workerButtons(ctx, w, load)) : null);
    });
    const t = h('table', {class: 'table'}, h('thead', null, h('tr', null,
      ['Worker', 'Host', 'PID', 'State', 'Queues', 'Plugins', 'Uptime', 'Running / threads'].map((x) => h('th', {scope: 'col'}, x)),
      admin ? h('th', {scope: 'col'}, 'Actions') : null)), h('tbody', null, rows));
    clear(box).append(tableWrap(t, 'Workers'));
  }

  ctx.every(3000, load);
  await load();
}

function stateOf(w) {
  const s = w.state || 'running';
  return badge(s, s === 'running' ? 'good' : 'warn');
}

function plugins(w) {
  const ps = w.plugins || [];
  if (!ps.length) return '–';
  return ps.map((p) => (p && typeof p === 'object' ? `${p.name}${p.version ? ` ${p.version}` : ''}` : String(p))).join(', ');
}

function workerButtons(ctx, w, after) {
  const state = w.state || 'running';
  const quiet = state === 'running'
    ? button('Quiet', (e) => act(e.currentTarget, 'quiet'), {class: 'btn-small', 'data-action': 'quiet', 'data-focus-key': `q:${w.id}`})
    : null;
  const stop = state !== 'stopping'
    ? button('Stop', (e) => act(e.currentTarget, 'stop'), {class: 'btn-small btn-danger', 'data-action': 'stop', 'data-focus-key': `s:${w.id}`})
    : null;
  async function act(btn, action) {
    const ok = await confirmDialog({
      title: action === 'quiet' ? 'Quiet this worker' : 'Stop this worker',
      body: h('p', null, action === 'quiet'
        ? `Worker ${w.id} takes no new job; it finishes the ${fmtNum(w.running ?? (w.jobs || []).length)} it runs and stays up.`
        : `Worker ${w.id} stops as on SIGTERM: it finishes what it runs (within its grace time) and exits.`),
      confirm: action === 'quiet' ? 'Quiet it' : 'Stop it',
      danger: action === 'stop',
    });
    if (!ok) return;
    await busy(btn, async () => {
      await api.post(`/v1/workers/${enc(w.id)}/${action}`, undefined, {signal: ctx.signal});
      notify(`Worker ${w.id}: ${action === 'quiet' ? 'quiet' : 'stop'} requested; it sees it within a second or two.`, 'success');
      if (after) await after();
    });
  }
  return [quiet, ' ', stop];
}

// Re-rendering a refreshed table must not throw the keyboard focus away.
function keepFocus(box, fn) {
  const key = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  fn();
  if (key) {
    const el = box.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (el) el.focus();
  }
}

async function renderOne(root, ctx, id) {
  const admin = isAdmin();
  const info = h('div');
  const listBox = h('div');
  const status = h('p', {class: 'list-status muted', 'aria-live': 'polite'});
  let offset = 0;
  let total = 0;
  let worker = null;
  const prev = button('← Previous', () => {
    offset = Math.max(0, offset - PAGE);
    load();
  }, {class: 'btn-small', 'data-action': 'prev', disabled: true});
  const next = button('Next →', () => {
    offset += PAGE;
    load();
  }, {class: 'btn-small', 'data-action': 'next', disabled: true});
  root.append(pageHeader(h('span', null, 'Worker ', h('span', {class: 'mono wrap'}, id))),
    section('Process', info),
    section('Jobs it runs now', h('div', {class: 'pager'}, prev, next, status), listBox));

  async function load() {
    try {
      const w = await api.get(`/v1/workers/${enc(id)}?offset=${offset}&limit=${PAGE}`, {signal: ctx.signal});
      if (!ctx.alive) return;
      worker = w;
      total = typeof w.running === 'number' ? w.running : (w.jobs || []).length;
      if (offset >= total && offset > 0) {
        offset = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE);
        return load();
      }
      keepFocus(info, () => fill(info, h('dl', {class: 'kv kv-wide'},
        h('dt', null, 'Host'), h('dd', null, w.host || '–'),
        h('dt', null, 'PID'), h('dd', null, String(w.pid ?? '–')),
        h('dt', null, 'State'), h('dd', null, stateOf(w)),
        h('dt', null, 'Queues'), h('dd', null, (w.queues || []).join(', ') || '–'),
        h('dt', null, 'Plugins'), h('dd', null, plugins(w)),
        h('dt', null, 'Started'), h('dd', null, timeEl(w.started_at), w.started_at ? ` (up ${fmtDuration(Date.now() - new Date(w.started_at))})` : ''),
        h('dt', null, 'Threads'), h('dd', null, fmtNum(w.threads)),
        h('dt', null, 'Running'), h('dd', null, fmtNum(total))),
      admin ? h('div', {class: 'page-actions'}, workerButtons(ctx, w, load)) : null));
      const jobs = w.jobs || [];
      const rows = jobs.map((j) => h('tr', null,
        h('td', {class: 'id'}, link(`#/job/${enc(j.id)}`, j.id, {class: 'mono'})),
        h('td', null, j.type),
        h('td', null, timeEl(j.started_at)),
        h('td', null, j.started_at ? fmtDuration(Date.now() - new Date(j.started_at)) : '–')));
      if (!rows.length) rows.push(emptyRow(4, 'It runs no job right now.'));
      const t = h('table', {class: 'table table-jobs'}, h('thead', null, h('tr', null,
        ['Job', 'Type', 'Started', 'Running for'].map((x) => h('th', {scope: 'col'}, x)))), h('tbody', null, rows));
      listBox.replaceChildren(tableWrap(t, 'Jobs of this worker'));
      status.textContent = total ? `${fmtNum(offset + 1)}–${fmtNum(offset + jobs.length)} of ${fmtNum(total)}` : '';
      prev.disabled = offset === 0;
      next.disabled = offset + PAGE >= total;
    } catch (err) {
      if (!ctx.alive || err.name === 'AbortError') return;
      if (err.status === 404) {
        info.replaceChildren(errorBox(worker ? {detail: `Worker ${id} has left: it stopped or stopped beating.`} : err),
          h('p', null, link('#/workers', 'All workers')));
        listBox.replaceChildren();
        prev.disabled = true;
        next.disabled = true;
        return;
      }
      info.replaceChildren(errorBox(err));
    }
  }

  ctx.every(3000, load);
  await load();
}
