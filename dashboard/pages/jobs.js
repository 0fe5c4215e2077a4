// The job browser: a queue and a state, newest first, cursor pagination (a stack of
// cursors for "previous"), search by id, filters by type and error text, and bulk
// retry/delete of what the filter selects. jobList() is also used by the queue page.

import {api, enc, isAdmin} from '../api.js';
import {
  h, clear, fmtNum, timeEl, pageHeader, tableWrap, errorBox, emptyRow, longText,
  button, busy, confirmDialog, notify, ALL_STATES, qs, fmtDuration, link, errorText,
} from '../ui.js';

const PAGE_SIZES = [25, 50, 100, 200];
// With a filter, one call may return fewer jobs than asked (it examines a bounded
// number of entries); the list keeps calling until the page is full, up to this many
// calls, then offers "next".
const MAX_CALLS_PER_PAGE = 12;

// Per state: the two orders the API offers, [default, other], each [order param, label].
const ORDERS = {
  waiting: [['desc', 'newest first'], ['asc', 'next to run first']],
  scheduled: [['asc', 'due soonest first'], ['desc', 'due latest first']],
  failed: [['asc', 'next retry first'], ['desc', 'last retry first']],
  active: [['asc', 'lease ending first'], ['desc', 'lease ending last']],
  succeeded: [['asc', 'newest first'], ['desc', 'oldest first']],
  dead: [['asc', 'newest first'], ['desc', 'oldest first']],
  canceled: [['asc', 'newest first'], ['desc', 'oldest first']],
};

export function defaultOrder(state) {
  return (ORDERS[state] || ORDERS.waiting)[0][0];
}

// Columns after ID and type, per state.
function columns(state) {
  const when = {
    waiting: ['Enqueued', (j) => timeEl(j.created_at)],
    scheduled: ['Runs at', (j) => timeEl(j.run_at, {relative: true})],
    failed: ['Next attempt', (j) => timeEl(j.run_at, {relative: true})],
    active: ['Started', (j) => timeEl(j.started_at)],
  }[state] || ['Finished', (j) => timeEl(j.finished_at)];
  const cols = [when, ['Attempts', (j) => `${fmtNum(j.attempts)} / ${fmtNum(j.max_attempts)}`]];
  if (state === 'waiting' || state === 'scheduled') cols.push(['Priority', (j) => fmtNum(j.priority)]);
  if (state === 'active') {
    cols.push(['Worker', (j) => j.worker || '–']);
    cols.push(['Progress', (j) => (j.progress ? `${j.progress.percent}%` : '–')]);
  }
  if (state === 'succeeded') {
    cols.push(['Ran for', (j) => (j.started_at && j.finished_at ? fmtDuration(new Date(j.finished_at) - new Date(j.started_at)) : '–')]);
  }
  if (state === 'failed' || state === 'dead' || state === 'canceled') {
    cols.push(['Last error', (j) => {
      const e = (j.errors || [])[j.errors.length - 1];
      return e ? longText(e.message, 100) : h('span', {class: 'muted'}, '–');
    }]);
  }
  return cols;
}

// A paged list of one queue's jobs in one state. opts: {queue, state, type, error,
// order, limit}. Returns {el, reload}.
export function jobList(ctx, opts) {
  const state = opts.state || 'waiting';
  const order = opts.order || defaultOrder(state);
  const limit = opts.limit || 50;
  const stack = [null]; // stack[i] = the cursor of page i (null for the first)
  let next = null;
  let loading = false;
  let changed = 0;

  const status = h('p', {class: 'list-status muted', 'aria-live': 'polite'});
  const prev = button('← Previous', () => go(-1), {class: 'btn-small', 'data-action': 'prev', disabled: true});
  const nextBtn = button('Next →', () => go(+1), {class: 'btn-small', 'data-action': 'next', disabled: true});
  const refresh = button('Refresh', () => load(), {class: 'btn-small', 'data-action': 'refresh'});
  const pager = h('div', {class: 'pager'}, prev, nextBtn, refresh, status);
  const cols = columns(state);
  const tbody = h('tbody');
  const table = h('table', {class: 'table table-jobs'},
    h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'ID'), h('th', {scope: 'col'}, 'Type'),
      cols.map(([name]) => h('th', {scope: 'col'}, name)))),
    tbody);
  const errBox = h('div');
  const el = h('div', {class: 'job-list', dataset: {state, queue: opts.queue || ''}}, errBox, pager, tableWrap(table, `${state} jobs`));

  function statusText(n, ms, calls) {
    const page = stack.length;
    let t = `page ${page} · ${fmtNum(n)} job${n === 1 ? '' : 's'} · ${ms} ms`;
    if (calls > 1) t += ` (${calls} calls)`;
    if (changed) t += ` · ${fmtNum(changed)} change${changed === 1 ? '' : 's'} since (refresh)`;
    return t;
  }

  async function load() {
    if (!opts.queue) {
      clear(tbody).append(emptyRow(cols.length + 2, 'Pick a queue.'));
      return;
    }
    loading = true;
    prev.disabled = true;
    nextBtn.disabled = true;
    el.setAttribute('aria-busy', 'true');
    const t0 = performance.now();
    const jobs = [];
    let cursor = stack[stack.length - 1];
    let calls = 0;
    try {
      do {
        const want = limit - jobs.length;
        const data = await api.get(`/v1/jobs${qs({queue: opts.queue, state, limit: want, cursor, order: order === 'asc' ? null : order,
          type: opts.type, error: opts.error})}`, {signal: ctx.signal});
        calls++;
        jobs.push(...((data && data.jobs) || []).slice(0, want));
        cursor = data ? data.next_cursor : null;
      } while (cursor && jobs.length < limit && calls < MAX_CALLS_PER_PAGE && ctx.alive);
      if (!ctx.alive) return;
      next = cursor || null;
      changed = 0;
      errBox.replaceChildren();
      const rows = jobs.map((j) => h('tr', {dataset: {id: j.id}},
        h('td', {class: 'id'}, link(`#/job/${enc(j.id)}`, j.id, {class: 'mono'})),
        h('td', null, j.type),
        cols.map(([, f]) => h('td', null, f(j)))));
      if (!rows.length) {
        const what = opts.type || opts.error ? 'No job matches the filter' : `No ${state} jobs`;
        rows.push(emptyRow(cols.length + 2, next ? `${what} in this stretch; press Next to look further.` : `${what}.`));
      }
      clear(tbody).append(...rows);
      const ms = Math.round(performance.now() - t0);
      el.dataset.page = String(stack.length);
      el.dataset.loadMs = String(ms);
      el.dataset.count = String(jobs.length);
      status.textContent = statusText(jobs.length, ms, calls);
    } catch (err) {
      if (!ctx.alive || err.name === 'AbortError') return;
      errBox.replaceChildren(errorBox(err));
      clear(tbody).append(emptyRow(cols.length + 2, 'Could not load the jobs.'));
    } finally {
      loading = false;
      el.removeAttribute('aria-busy');
      prev.disabled = stack.length <= 1;
      nextBtn.disabled = !next;
    }
  }

  async function go(dir) {
    if (loading) return;
    if (dir > 0) {
      if (!next) return;
      stack.push(next);
    } else {
      if (stack.length <= 1) return;
      stack.pop();
    }
    const focusNext = document.activeElement === (dir > 0 ? nextBtn : prev);
    await load();
    // Keep the keyboard where it was; if that button is now disabled, the other one.
    if (focusNext) {
      const target = dir > 0 ? nextBtn : prev;
      (target.disabled ? (dir > 0 ? prev : nextBtn) : target).focus();
    }
  }

  // Events for this queue do not re-render the page under the reader: they are
  // counted, and "Refresh" shows them.
  ctx.live((batch) => {
    if (!opts.queue || !batch.queues.has(opts.queue)) return;
    changed += batch.perQueue.get(opts.queue) || 0;
    if (!loading && el.dataset.loadMs) status.textContent = statusText(Number(el.dataset.count), Number(el.dataset.loadMs), 1);
  });

  return {el, reload: () => {
    stack.length = 1;
    return load();
  }};
}

// #/jobs?queue=Q&state=S&type=T&error=E&order=O&limit=N
export async function render(root, ctx, params, query) {
  const admin = isAdmin();
  let queue = query.get('queue') || '';
  const state = ALL_STATES.includes(query.get('state')) ? query.get('state') : 'waiting';
  const type = query.get('type') || '';
  const error = query.get('error') || '';
  const order = ORDERS[state].some(([o]) => o === query.get('order')) ? query.get('order') : defaultOrder(state);
  const limit = PAGE_SIZES.includes(Number(query.get('limit'))) ? Number(query.get('limit')) : 50;

  // Search by id.
  const idInput = h('input', {id: 'job-id', type: 'search', placeholder: '01J…-queue', spellcheck: 'false', autocomplete: 'off'});
  const idErr = h('p', {class: 'form-error', role: 'alert'});
  const idForm = h('form', {class: 'inline-form', role: 'search', 'aria-label': 'Find a job by id'},
    h('label', {for: 'job-id'}, 'Job id'), idInput, h('button', {type: 'submit', class: 'btn'}, 'Open'), idErr);
  idForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    idErr.textContent = '';
    if (!id) return;
    const btn = idForm.querySelector('button');
    await busy(btn, async () => {
      try {
        await api.get(`/v1/jobs/${enc(id)}`, {signal: ctx.signal});
        location.hash = `#/job/${enc(id)}`;
      } catch (err) {
        if (err.name === 'AbortError') return;
        idErr.textContent = errorText(err);
      }
    });
  });

  root.append(pageHeader('Jobs'), h('section', {class: 'card'}, idForm));

  let queues = [];
  try {
    const data = await api.get('/v1/queues', {signal: ctx.signal});
    queues = ((data && data.queues) || []).map((q) => q.name);
  } catch (err) {
    if (err.name === 'AbortError' || err.status === 401) throw err;
    root.append(errorBox(err));
  }
  if (!ctx.alive) return;
  if (!queue && queues.length) queue = queues[0];

  // The filter form: changing it changes the URL (so it can be bookmarked and Back works).
  const qSel = h('select', {id: 'f-queue', name: 'queue'},
    (queues.includes(queue) || !queue ? queues : [queue, ...queues]).map((n) => h('option', {value: n, selected: n === queue}, n)));
  const sSel = h('select', {id: 'f-state', name: 'state'}, ALL_STATES.map((s) => h('option', {value: s, selected: s === state}, s)));
  const oSel = h('select', {id: 'f-order', name: 'order'}, ORDERS[state].map(([o, label]) => h('option', {value: o, selected: o === order}, label)));
  const tIn = h('input', {id: 'f-type', name: 'type', type: 'text', value: type, placeholder: 'any', spellcheck: 'false'});
  const eIn = h('input', {id: 'f-error', name: 'error', type: 'text', value: error, placeholder: 'any', spellcheck: 'false'});
  const lSel = h('select', {id: 'f-limit', name: 'limit'}, PAGE_SIZES.map((n) => h('option', {value: n, selected: n === limit}, String(n))));
  const filter = h('form', {class: 'filters', 'aria-label': 'Filter jobs'},
    field('f-queue', 'Queue', qSel), field('f-state', 'State', sSel), field('f-order', 'Order', oSel),
    field('f-type', 'Type', tIn), field('f-error', 'Error contains', eIn), field('f-limit', 'Per page', lSel),
    h('div', {class: 'field field-submit'}, h('button', {type: 'submit', class: 'btn btn-primary'}, 'Show')));
  const apply = (e) => {
    if (e) e.preventDefault();
    const s = sSel.value;
    const o = s === state ? oSel.value : defaultOrder(s);
    location.hash = `#/jobs${qs({queue: qSel.value, state: s, type: tIn.value.trim(), error: eIn.value.trim(),
      order: o === defaultOrder(s) ? null : o, limit: Number(lSel.value) === 50 ? null : lSel.value})}`;
  };
  filter.addEventListener('submit', apply);
  for (const sel of [qSel, sSel, oSel, lSel]) sel.addEventListener('change', apply);

  root.append(h('section', {class: 'card'}, filter));
  if (!queue) {
    root.append(h('section', {class: 'card'}, h('p', null, 'No queue exists yet: nothing was ever enqueued. ', link('#/', 'See the overview'), ' for how to submit a job.')));
    return;
  }

  const list = jobList(ctx, {queue, state, type, error, order, limit});
  const heading = h('h2', null, `${state} jobs in `, link(`#/queue/${enc(queue)}`, queue),
    type ? ` of type ${type}` : '', error ? ` with errors containing “${error}”` : '');
  const bulk = admin && state !== 'active' ? bulkActions(ctx, {queue, state, type, error, reload: () => list.reload()}) : null;
  root.append(h('section', {class: 'card'}, h('div', {class: 'section-head'}, heading, bulk), list.el));
  await list.reload();
}

function field(id, label, input) {
  return h('div', {class: 'field'}, h('label', {for: id}, label), input);
}

// Bulk retry / delete of everything the filter selects, after a confirmation.
export function bulkActions(ctx, {queue, state, type, error, reload}) {
  const describe = () => {
    const parts = [`every ${state} job in queue ${queue}`];
    if (type) parts.push(`of type ${type}`);
    if (error) parts.push(`whose errors contain “${error}”`);
    return parts.join(' ');
  };
  async function run(action, btn) {
    let count = null;
    if (!type && !error) {
      try {
        const q = await api.get(`/v1/queues/${enc(queue)}`, {signal: ctx.signal});
        count = q.counts ? q.counts[state] : null;
      } catch {
        count = null;
      }
    }
    const what = count === null ? describe() : `${fmtNum(count)} ${state} job${count === 1 ? '' : 's'} (all of them) in queue ${queue}`;
    const ok = await confirmDialog({
      title: action === 'retry' ? 'Retry jobs' : 'Delete jobs',
      body: [h('p', null, `${action === 'retry' ? 'Retry' : 'Delete'} ${what}?`),
        action === 'delete' ? h('p', {class: 'muted'}, 'Deleted jobs are gone for good.') : null],
      confirm: action === 'retry' ? 'Retry them' : 'Delete them',
      danger: action === 'delete',
    });
    if (!ok) return;
    await busy(btn, async () => {
      const body = {action, state};
      if (type) body.type = type;
      if (error) body.error = error;
      const r = await api.post(`/v1/queues/${enc(queue)}/bulk`, body, {signal: ctx.signal});
      notify(`${action === 'retry' ? 'Retried' : 'Deleted'} ${fmtNum(r.done)} of ${fmtNum(r.matched)} matching job${r.matched === 1 ? '' : 's'}.`, 'success');
      await reload();
    });
  }
  const canRetry = ['dead', 'failed', 'canceled'].includes(state);
  const retryBtn = canRetry ? button('Retry all matching', (e) => run('retry', e.currentTarget), {class: 'btn-small', 'data-action': 'bulk-retry'}) : null;
  const delBtn = button('Delete all matching', (e) => run('delete', e.currentTarget), {class: 'btn-small btn-danger', 'data-action': 'bulk-delete'});
  return h('div', {class: 'bulk'}, retryBtn, delBtn);
}
