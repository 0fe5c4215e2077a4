// One queue: its counts, pause/resume, purge a state (the confirmation says how many
// jobs go), and the jobs in a chosen state.

import {api, enc, isAdmin} from '../api.js';
import {
  h, fmtNum, fmtDuration, pageHeader, section, badge, button, busy, confirmDialog, notify,
  STATES, qs, link,
} from '../ui.js';
import {jobList, bulkActions} from './jobs.js';
import {applyMoves, serverNow} from '../live.js';

const PURGEABLE = ['waiting', 'scheduled', 'failed', 'succeeded', 'dead', 'canceled'];

export async function render(root, ctx, [name], query) {
  const admin = isAdmin();
  const state = [...STATES, 'canceled'].includes(query.get('state')) ? query.get('state') : 'waiting';
  let since = serverNow();
  let q = await api.get(`/v1/queues/${enc(name)}`, {signal: ctx.signal});
  if (!ctx.alive) return;
  q.counts = q.counts || {};

  const pausedBadge = h('span');
  const pauseBtn = admin ? button('', () => togglePause(), {class: 'btn-small', 'data-action': 'pause'}) : null;
  const counts = new Map();
  const countsEl = h('div', {class: 'counts'}, [...STATES, 'canceled'].map((s) => {
    const v = h('span', {class: 'count-value', dataset: {queue: name, state: s}});
    counts.set(s, v);
    return h('a', {href: `#/queue/${enc(name)}${qs({state: s})}`, class: ['count-tile', `state-${s}`, s === state ? 'current' : null],
      'aria-current': s === state ? 'true' : null}, h('span', {class: 'count-label'}, s), v);
  }));
  const age = h('p', {class: 'muted'});
  root.append(
    pageHeader(h('span', null, 'Queue ', h('span', {class: 'mono'}, name), ' ', pausedBadge), pauseBtn),
    h('section', {class: 'card'}, countsEl, age, admin ? purgeForm() : null));

  function show() {
    pausedBadge.replaceChildren(q.paused ? badge('paused', 'warn') : '');
    if (pauseBtn) {
      pauseBtn.textContent = q.paused ? 'Resume' : 'Pause';
      pauseBtn.dataset.action = q.paused ? 'resume' : 'pause';
    }
    for (const [s, el] of counts) el.textContent = fmtNum(Math.max(0, (q.counts && q.counts[s]) || 0));
    const parts = [];
    if (q.counts && q.counts.waiting && (q.oldest_waiting_at || typeof q.oldest_waiting_age_ms === 'number')) {
      const ms = q.oldest_waiting_at ? Date.now() - new Date(q.oldest_waiting_at).getTime() : q.oldest_waiting_age_ms;
      parts.push(`The oldest waiting job has waited ${fmtDuration(Math.max(0, ms))}.`);
    }
    if (q.paused) parts.push('Paused: workers take no job from it; jobs can still be enqueued, and running ones finish.');
    if (q.max_length) parts.push(`At most ${fmtNum(q.max_length)} jobs.`);
    age.textContent = parts.join(' ');
  }

  async function refresh() {
    try {
      const at = serverNow();
      const fresh = await api.get(`/v1/queues/${enc(name)}`, {signal: ctx.signal});
      if (ctx.alive) {
        q = fresh;
        q.counts = q.counts || {};
        since = at;
        show();
      }
    } catch (err) {
      if (err.name !== 'AbortError' && ctx.alive && err.status !== 401) notify(`Queue ${name}: ${err.detail || err}`, 'error');
    }
  }

  async function togglePause() {
    const action = q.paused ? 'resume' : 'pause';
    await busy(pauseBtn, async () => {
      const r = await api.post(`/v1/queues/${enc(name)}/${action}`, undefined, {signal: ctx.signal});
      q.paused = r && typeof r.paused === 'boolean' ? r.paused : !q.paused;
      show();
      notify(`Queue ${name} ${q.paused ? 'paused' : 'resumed'}.`, 'success');
    });
  }

  function purgeForm() {
    const sel = h('select', {id: 'purge-state'}, PURGEABLE.map((s) => h('option', {value: s, selected: s === (state === 'active' ? 'dead' : state)}, s)));
    const btn = button('Purge…', null, {class: 'btn-small btn-danger', 'data-action': 'purge'});
    btn.addEventListener('click', async () => {
      const s = sel.value;
      // The count right now, so the confirmation says how many jobs will go.
      await refresh();
      const n = (q.counts && q.counts[s]) || 0;
      const ok = await confirmDialog({
        title: `Purge ${s} jobs`,
        body: [h('p', null, `Remove ${fmtNum(n)} ${s} job${n === 1 ? '' : 's'} from queue ${name}?`),
          h('p', {class: 'muted'}, 'They are deleted for good. Jobs that arrive meanwhile may be removed too.')],
        confirm: `Remove ${fmtNum(n)} job${n === 1 ? '' : 's'}`,
        danger: true,
      });
      if (!ok) return;
      await busy(btn, async () => {
        const r = await api.del(`/v1/queues/${enc(name)}/jobs${qs({state: s})}`, {signal: ctx.signal});
        notify(`Removed ${fmtNum(r.removed)} ${s} job${r.removed === 1 ? '' : 's'} from ${name}.`, 'success');
        await refresh();
        if (s === state) await list.reload();
      });
    });
    return h('div', {class: 'inline-form purge'}, h('label', {for: 'purge-state'}, 'Purge state'), sel, btn);
  }

  show();
  const list = jobList(ctx, {queue: name, state});
  const bulk = admin && ['dead', 'failed', 'canceled'].includes(state)
    ? bulkActions(ctx, {queue: name, state, reload: () => list.reload()}) : null;
  root.append(h('section', {class: 'card'},
    h('div', {class: 'section-head'}, h('h2', null, `${state} jobs`), bulk,
      link(`#/jobs${qs({queue: name, state})}`, 'Filter in the job browser', {class: 'small'})),
    list.el));

  // Counts: moved by events at once, refetched every few seconds as the truth.
  let soon = false;
  ctx.live((batch) => {
    if (!batch.queues.has(name) && !batch.resync) return;
    if (applyMoves(batch, name, q.counts, since)) show();
    if ((batch.unsure.has(name) || batch.resync) && !soon) { // the events do not say where those jobs were
      soon = true;
      ctx.after(1000, () => {
        soon = false;
        refresh();
      });
    }
  });
  ctx.every(4000, refresh);
  await list.reload();
}
