// One job: its payload, state timeline, attempts and their errors, progress, log
// lines, result and the schedule it came from; retry, cancel, delete, and "edit
// payload and retry" for a dead job.

import {api, enc, isAdmin} from '../api.js';
import {
  h, clear, fill, fmtNum, fmtDuration, timeEl, pageHeader, section, tableWrap, stateBadge, longText, jsonBlock,
  prettyJSON, button, busy, confirmDialog, openDialog, notify, link, qs, errorBox, badge,
} from '../ui.js';

const RETRYABLE = ['dead', 'failed', 'canceled'];
const CANCELABLE = ['waiting', 'scheduled', 'active', 'failed'];

export async function render(root, ctx, [id]) {
  const admin = isAdmin();
  const body = h('div', {class: 'job-detail'});
  const actions = h('div', {class: 'page-actions'});
  const title = h('h1', {tabindex: -1}, 'Job ', h('span', {class: 'mono wrap'}, id));
  root.append(h('div', {class: 'page-head'}, title, actions), body);

  let job = null;
  let loading = false;
  let again = false;

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const j = await api.get(`/v1/jobs/${enc(id)}`, {signal: ctx.signal});
      if (!ctx.alive) return;
      job = j;
      show();
    } catch (err) {
      if (!ctx.alive || err.name === 'AbortError') return;
      if (err.status === 404 && job) {
        job = null;
        clear(actions);
        delete actions.dataset.key;
        clear(body).append(errorBox(err), h('p', null, link('#/jobs', 'Back to the job browser')));
        return;
      }
      if (!job) {
        clear(body).append(errorBox(err));
        return;
      }
      notify(err.detail || String(err), 'error');
    } finally {
      loading = false;
      if (again && ctx.alive) {
        again = false;
        load();
      }
    }
  }

  function show() {
    const j = job;
    title.replaceChildren('Job ', h('span', {class: 'mono wrap'}, j.id), ' ', stateBadge(j.state));
    body.dataset.state = j.state;
    // The buttons are rebuilt only when they change, so a refresh never takes the
    // keyboard focus away (nor the element a dialog returns the focus to).
    const key = `${j.state}/${!!j.cancel_requested}`;
    if (admin && actions.dataset.key !== key) {
      actions.dataset.key = key;
      const focused = actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      fill(actions, ...jobActions(j));
      const again = focused && actions.querySelector(`[data-action="${focused}"]`);
      if (again) again.focus();
    }
    const sched = j.schedule && j.schedule.name
      ? [link(`#/schedules/${enc(j.schedule.name)}`, j.schedule.name), ' (tick ', timeEl(j.schedule.tick), ')'] : null;
    const dl = h('dl', {class: 'kv kv-wide'},
      kv('Queue', link(`#/queue/${enc(j.queue)}`, j.queue)),
      kv('Type', h('span', {class: 'mono'}, j.type)),
      kv('State', stateBadge(j.state), j.cancel_requested ? [' ', badge('cancel requested', 'warn')] : null),
      kv('Attempts', `${fmtNum(j.attempts)} of ${fmtNum(j.max_attempts)}`),
      kv('Priority', fmtNum(j.priority)),
      j.backoff ? kv('Backoff', `${j.backoff.kind}, ${fmtDuration(j.backoff.base_ms)} up to ${fmtDuration(j.backoff.cap_ms)}`) : null,
      j.timeout_ms ? kv('Timeout', fmtDuration(j.timeout_ms)) : null,
      j.worker ? kv('Worker', link(`#/workers/${enc(j.worker)}`, j.worker)) : null,
      j.unique_key ? kv('Unique key', h('span', {class: 'mono wrap'}, j.unique_key)) : null,
      j.tags && j.tags.length ? kv('Tags', j.tags.map((t) => badge(t))) : null,
      sched ? kv('Schedule', sched) : null,
      j.expires_at ? kv('Expires', timeEl(j.expires_at, {relative: true})) : null,
      j.lease_deadline ? kv('Lease until', timeEl(j.lease_deadline, {relative: true})) : null);

    const progress = j.progress
      ? h('div', {class: 'progress-row'},
        h('progress', {max: 100, value: j.progress.percent, id: 'job-progress', 'aria-label': 'progress'}),
        h('span', null, `${j.progress.percent}%`), j.progress.message ? h('span', {class: 'muted wrap'}, ` ${j.progress.message}`) : null)
      : null;

    fill(body,
      section('Details', dl, progress),
      section('Timeline', timeline(j)),
      section(`Attempts and errors (${fmtNum((j.errors || []).length)})`, attempts(j)),
      section('Payload', jsonBlock(j.payload, {label: 'payload'})),
      j.result !== undefined ? section('Result', jsonBlock(j.result, {label: 'result'})) : null,
      section(`Log (${fmtNum((j.logs || []).length)} lines)`, logs(j)));
  }

  function jobActions(j) {
    const out = [];
    if (RETRYABLE.includes(j.state)) {
      out.push(button('Retry', (e) => act(e.currentTarget, 'retry'), {class: 'btn-primary', 'data-action': 'retry'}));
      out.push(button('Edit payload and retry…', (e) => editAndRetry(e.currentTarget), {'data-action': 'edit-retry'}));
    }
    if (CANCELABLE.includes(j.state) && !j.cancel_requested) {
      out.push(button('Cancel', (e) => act(e.currentTarget, 'cancel'), {'data-action': 'cancel'}));
    }
    if (j.state !== 'active') {
      out.push(button('Delete', (e) => act(e.currentTarget, 'delete'), {class: 'btn-danger', 'data-action': 'delete'}));
    }
    return out;
  }

  async function act(btn, action) {
    if (action === 'delete' || action === 'cancel') {
      const ok = await confirmDialog({
        title: action === 'delete' ? 'Delete this job' : 'Cancel this job',
        body: h('p', null, action === 'delete' ? `Delete job ${id} for good?` : `Cancel job ${id}?${job && job.state === 'active' ? ' Its worker is told on its next heartbeat.' : ''}`),
        confirm: action === 'delete' ? 'Delete' : 'Cancel the job',
        danger: true,
      });
      if (!ok) return;
    }
    await busy(btn, async () => {
      if (action === 'delete') {
        await api.del(`/v1/jobs/${enc(id)}`, {signal: ctx.signal});
        notify(`Job ${id} deleted.`, 'success');
        location.hash = `#/jobs${qs({queue: job.queue, state: job.state})}`;
        return;
      }
      const r = await api.post(`/v1/jobs/${enc(id)}/${action}`, undefined, {signal: ctx.signal});
      notify(action === 'retry' ? `Job retried: it is ${r.state} now.` : `Job ${r.cancel_requested ? 'asked to stop' : 'canceled'}.`, 'success');
      await load();
    });
  }

  async function editAndRetry(btn) {
    const text = prettyJSON(job.payload === undefined ? null : job.payload);
    const sent = await openDialog('Edit payload and retry', (dlg, close) => {
      const area = h('textarea', {id: 'edit-payload', rows: 14, spellcheck: 'false', 'aria-describedby': 'edit-payload-help edit-payload-error', value: text});
      const msg = h('p', {class: 'form-error', id: 'edit-payload-error', role: 'alert'});
      const ok = h('button', {type: 'submit', class: 'btn btn-primary', 'data-action': 'send-retry'}, 'Retry with this payload');
      const cancel = button('Cancel', () => close(false));
      const form = h('form', {class: 'dialog-body'},
        h('label', {for: 'edit-payload'}, 'Payload (JSON)'),
        area,
        h('p', {class: 'muted small', id: 'edit-payload-help'}, `The job goes back to waiting with this payload instead of its own. Job ${id}.`),
        msg,
        h('div', {class: 'dialog-actions'}, cancel, ok));
      area.addEventListener('input', () => {
        msg.textContent = '';
        area.removeAttribute('aria-invalid');
      });
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const raw = area.value.trim();
        try {
          JSON.parse(raw);
        } catch (err) {
          msg.textContent = `Not valid JSON: ${err.message}`;
          area.setAttribute('aria-invalid', 'true');
          area.focus();
          return;
        }
        ok.disabled = true;
        try {
          // Sent as written, so numbers keep every digit.
          const r = await api.postRaw(`/v1/jobs/${enc(id)}/retry`, `{"payload":${raw}}`, {signal: ctx.signal});
          close(r || true);
        } catch (err) {
          if (err.name === 'AbortError') return;
          msg.textContent = err.detail || String(err);
        } finally {
          ok.disabled = false;
        }
      });
      dlg.append(form);
      return area;
    });
    if (sent) {
      notify(`Job retried with the new payload: it is ${sent.state || 'waiting'} now.`, 'success');
      await busy(btn, load);
    }
  }

  // Live: an event for this job refetches it (at most 4 times a second, as the
  // events come batched); an active job is also refetched every 2 s for its progress.
  ctx.live((batch) => {
    if (batch.jobs.has(id) || batch.overflow || batch.resync) load();
  });
  ctx.every(2000, () => {
    if (job && (job.state === 'active' || job.state === 'waiting')) load();
  });
  await load();
}

function kv(label, ...value) {
  return [h('dt', null, label), h('dd', null, ...value)];
}

function timeline(j) {
  const items = [];
  const add = (at, what, cls) => {
    if (at) items.push({at: new Date(at).getTime(), iso: at, what, cls});
  };
  add(j.created_at, 'created', 'created');
  for (const e of j.errors || []) add(e.at, `attempt ${e.attempt} failed`, 'failed');
  add(j.started_at, `${(j.errors || []).some((e) => new Date(e.at) < new Date(j.started_at)) ? 'started again' : 'started'} (attempt ${j.attempts}${j.state === 'active' ? ', running' : ''})`, 'active');
  if (j.finished_at) add(j.finished_at, j.state, j.state);
  if (j.run_at && (j.state === 'scheduled' || j.state === 'failed')) add(j.run_at, j.state === 'failed' ? 'next attempt due' : 'due', 'scheduled');
  items.sort((a, b) => a.at - b.at);
  const start = items.length ? items[0].at : 0;
  return h('ol', {class: 'timeline'}, items.map((it) => h('li', {class: `tl-${it.cls}`},
    h('span', {class: 'tl-dot', 'aria-hidden': 'true'}),
    h('span', {class: 'tl-what'}, it.what), ' ',
    timeEl(it.iso), it.at !== start ? h('span', {class: 'muted'}, ` (+${fmtDuration(it.at - start)})`) : null)));
}

function attempts(j) {
  const errs = j.errors || [];
  if (!errs.length) return h('p', {class: 'muted'}, j.attempts ? 'No attempt failed.' : 'Not attempted yet.');
  const rows = errs.slice().reverse().map((e) => h('tr', null,
    h('td', {class: 'num'}, fmtNum(e.attempt)), h('td', null, timeEl(e.at)), h('td', {class: 'error-text'}, longText(e.message, 200))));
  const t = h('table', {class: 'table'}, h('thead', null, h('tr', null,
    h('th', {scope: 'col'}, 'Attempt'), h('th', {scope: 'col'}, 'At'), h('th', {scope: 'col'}, 'Error'))), h('tbody', null, rows));
  return tableWrap(t, 'Attempts');
}

function logs(j) {
  const lines = j.logs || [];
  if (!lines.length) return h('p', {class: 'muted'}, 'No log lines.');
  const rows = lines.map((l) => h('tr', {class: `log-${l.level}`},
    h('td', null, timeEl(l.at)), h('td', null, l.level), h('td', {class: 'wrap'}, longText(l.message, 200))));
  const t = h('table', {class: 'table table-log'}, h('thead', null, h('tr', null,
    h('th', {scope: 'col'}, 'At'), h('th', {scope: 'col'}, 'Level'), h('th', {scope: 'col'}, 'Message'))), h('tbody', null, rows));
  const wrap = tableWrap(t, 'Log lines');
  return lines.length > 30 ? h('details', {class: 'long'}, h('summary', null, `${fmtNum(lines.length)} lines`), wrap) : wrap;
}
