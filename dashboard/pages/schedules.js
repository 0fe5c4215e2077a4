// Schedules: each with its cron expression and what it means in words, its time zone,
// the next fires, the last runs and how they went; pause, resume, trigger now.
// #/schedules/NAME shows one, with the state of the jobs its last runs made.

import {api, enc, isAdmin} from '../api.js';
import {
  h, clear, fmtNum, timeEl, pageHeader, tableWrap, errorBox, emptyRow, badge, button, busy, notify,
  link, relative, stateBadge,
} from '../ui.js';

const OUTCOME_KIND = {enqueued: 'good', triggered: 'good', skipped_overlap: 'warn', missed: 'bad'};

export async function render(root, ctx, params) {
  const one = params && params[0] ? params[0] : null;
  const admin = isAdmin();
  const box = h('div', {class: 'schedules'});
  root.append(pageHeader(one ? h('span', null, 'Schedule ', h('span', {class: 'mono wrap'}, one)) : 'Schedules',
    one ? link('#/schedules', 'All schedules', {class: 'small'}) : null), box);
  const jobStates = new Map(); // job id -> state, for the single-schedule page

  async function load() {
    try {
      let list;
      if (one) list = [await api.get(`/v1/schedules/${enc(one)}`, {signal: ctx.signal})];
      else list = ((await api.get('/v1/schedules', {signal: ctx.signal})) || {}).schedules || [];
      if (!ctx.alive) return;
      if (one) await loadJobStates(list[0]);
      if (!ctx.alive) return;
      const focusKey = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
      show(list);
      if (focusKey) {
        const el = box.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
        if (el) el.focus();
      }
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') clear(box).append(errorBox(err));
    }
  }

  async function loadJobStates(s) {
    const ids = (s.history || []).map((r) => r.job).filter(Boolean).slice(0, 10);
    await Promise.all(ids.map(async (id) => {
      const known = jobStates.get(id);
      if (known && ['succeeded', 'dead', 'canceled', 'gone'].includes(known)) return;
      try {
        const j = await api.get(`/v1/jobs/${enc(id)}`, {signal: ctx.signal});
        jobStates.set(id, j.state);
      } catch (err) {
        if (err.status === 404) jobStates.set(id, 'gone');
        else if (err.name === 'AbortError') throw err;
      }
    }));
  }

  function show(list) {
    if (!list.length) {
      clear(box).append(h('section', {class: 'card empty-state'}, h('p', null, 'No schedule yet.'),
        h('p', {class: 'muted'}, 'Create one with ', h('code', null, 'hopper schedule set NAME --cron "*/5 * * * *" --queue Q --type T'),
          ' or PUT /v1/schedules/{name}.')));
      return;
    }
    clear(box).append(...list.map((s) => card(s)));
  }

  function card(s) {
    const actions = admin ? h('div', {class: 'page-actions'},
      button(s.paused ? 'Resume' : 'Pause', (e) => act(e.currentTarget, s, s.paused ? 'resume' : 'pause'),
        {class: 'btn-small', 'data-action': s.paused ? 'resume' : 'pause', 'data-focus-key': `${s.paused ? 'r' : 'p'}:${s.name}`}),
      button('Trigger now', (e) => act(e.currentTarget, s, 'trigger'),
        {class: 'btn-small btn-primary', 'data-action': 'trigger', 'data-focus-key': `t:${s.name}`})) : null;
    const job = s.job || {};
    const fires = (s.next_fires && s.next_fires.length ? s.next_fires : [s.next_fire]).filter(Boolean);
    const history = s.history || [];
    const runs = history.slice(0, one ? 20 : 5).map((r) => h('tr', null,
      h('td', null, timeEl(r.at)),
      h('td', null, r.tick ? timeEl(r.tick) : h('span', {class: 'muted'}, 'manual')),
      h('td', null, badge(r.outcome, OUTCOME_KIND[r.outcome])),
      h('td', {class: 'id'}, r.job ? link(`#/job/${enc(r.job)}`, r.job, {class: 'mono'}) : '–'),
      one ? h('td', null, r.job && jobStates.has(r.job) ? (jobStates.get(r.job) === 'gone' ? h('span', {class: 'muted'}, 'deleted') : stateBadge(jobStates.get(r.job))) : '–') : null));
    if (!runs.length) runs.push(emptyRow(one ? 5 : 4, 'It has not run yet.'));
    const runsTable = h('table', {class: 'table'}, h('thead', null, h('tr', null,
      ['Ran at', 'Tick', 'Outcome', 'Job'].map((x) => h('th', {scope: 'col'}, x)),
      one ? h('th', {scope: 'col'}, 'Job state') : null)), h('tbody', null, runs));
    const title = one ? h('h2', null, s.name) : h('h2', null, link(`#/schedules/${enc(s.name)}`, s.name));
    return h('section', {class: 'card schedule', dataset: {schedule: s.name}},
      h('div', {class: 'section-head'}, h('div', null, title, ' ', s.paused ? badge('paused', 'warn') : badge('active', 'good')), actions),
      h('dl', {class: 'kv kv-wide'},
        h('dt', null, 'When'), h('dd', null, h('code', null, s.cron), ' — ', h('span', {class: 'explain'}, s.explain || '')),
        h('dt', null, 'Time zone'), h('dd', null, s.tz || 'UTC'),
        h('dt', null, 'Job'), h('dd', null, 'type ', h('span', {class: 'mono'}, job.type || '–'), ' on queue ',
          job.queue || s.queue ? link(`#/queue/${enc(job.queue || s.queue)}`, job.queue || s.queue) : '–'),
        h('dt', null, 'Policies'), h('dd', null, `misfire ${s.misfire || '–'}, overlap ${s.overlap || '–'}${s.jitter_ms ? `, jitter up to ${fmtNum(s.jitter_ms)} ms` : ''}`),
        h('dt', null, 'Next fires'), h('dd', null, fires.length
          ? h('ol', {class: 'fires'}, fires.map((f) => h('li', null, timeEl(f), h('span', {class: 'muted'}, ` ${relative(f)}`))))
          : h('span', {class: 'muted'}, s.paused ? 'none while paused' : 'none'))),
      h('h3', null, one ? 'Runs (newest first)' : 'Last runs'),
      tableWrap(runsTable, `Runs of ${s.name}`),
      !one && history.length > 5 ? h('p', {class: 'small'}, link(`#/schedules/${enc(s.name)}`, `All ${fmtNum(history.length)} recorded runs`)) : null);
  }

  async function act(btn, s, action) {
    await busy(btn, async () => {
      const r = await api.post(`/v1/schedules/${enc(s.name)}/${action}`, undefined, {signal: ctx.signal});
      if (action === 'trigger') {
        const id = r && r.job_id;
        notify(id ? [`Schedule ${s.name} triggered: job `, link(`#/job/${enc(id)}`, id, {class: 'mono'}), '.']
          : `Schedule ${s.name} triggered.`, 'success');
      } else {
        notify(`Schedule ${s.name} ${action === 'pause' ? 'paused' : 'resumed'}.`, 'success');
      }
      await load();
    });
  }

  ctx.every(5000, load);
  await load();
}
