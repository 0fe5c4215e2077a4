// Overview: every queue's counts by state (moved by live events between refetches),
// throughput over the last hour, the oldest waiting job per queue, workers online
// and Redis health.

import {api, enc, session} from '../api.js';
import {lineChart} from '../chart.js';
import {applyMoves, serverNow} from '../live.js';
import {
  h, clear, fill, fmtNum, fmtBytes, fmtDuration, pageHeader, section, tableWrap, errorBox, STATES,
  badge, link, qs,
} from '../ui.js';

const QUEUES_EVERY_MS = 4000;
const SLOW_EVERY_MS = 10000;

export async function render(root, ctx) {
  const queuesBox = h('div', {class: 'queues-box'});
  const tiles = h('div', {class: 'tiles'});
  const workersTile = tile('Workers online', '…', '#/workers');
  const brokerBox = h('div', {class: 'tile tile-wide'}, h('h2', {class: 'tile-title'}, 'Redis'), h('p', {class: 'muted'}, '…'));
  const rateTile = tile('Processed, last minute', '…');
  tiles.append(workersTile.el, rateTile.el, brokerBox);
  const chartBox = h('div', {class: 'charts'}, h('p', {class: 'muted'}, 'Loading throughput…'));
  root.append(
    pageHeader('Overview'),
    tiles,
    section('Queues', queuesBox),
    section('Throughput, last hour', chartBox),
  );

  // ---- queues: counts from GET /v1/queues, moved by events between refetches ----
  let queues = null; // [{name, paused, counts, oldest_waiting_at, oldest_waiting_age_ms}]
  let cells = new Map(); // queue -> {state -> element, age -> element}
  let fetching = false;
  let again = false;
  let queuesFailed = false; // the last refetch failed: the slower tiles follow its news

  async function loadQueues() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      const since = serverNow(); // events after this are news to the answer
      const data = await api.get('/v1/queues', {signal: ctx.signal});
      if (!ctx.alive) return;
      queues = (data && data.queues) || [];
      queues.forEach((q) => {
        q.fetchedAt = Date.now();
        q.since = since;
        q.counts = q.counts || {};
      });
      renderQueues();
      if (queuesFailed) { // back: the Redis and throughput tiles need not wait their turn
        queuesFailed = false;
        loadBroker();
        loadThroughput();
      }
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') {
        clear(queuesBox).append(errorBox(err));
        cells = new Map();
        if (!queuesFailed) { // nor may the Redis tile say "ok" for 10 s more
          queuesFailed = true;
          loadBroker();
        }
      }
    } finally {
      fetching = false;
      if (again && ctx.alive) {
        again = false;
        loadQueues();
      }
    }
  }

  function renderQueues() {
    if (!queues.length) {
      clear(queuesBox).append(emptyState());
      cells = new Map();
      return;
    }
    const names = queues.map((q) => q.name).join('\n');
    if (queuesBox.dataset.names !== names || !cells.size) {
      queuesBox.dataset.names = names;
      cells = new Map();
      const rows = queues.map((q) => {
        const c = {};
        cells.set(q.name, c);
        const tds = STATES.map((s) => {
          const a = h('a', {href: `#/jobs${qs({queue: q.name, state: s})}`, class: 'count', dataset: {queue: q.name, state: s},
            'aria-label': `${q.name}: ${s} jobs`});
          c[s] = a;
          return h('td', {class: ['num', `col-${s}`], 'data-label': s}, a);
        });
        c.paused = h('span');
        c.age = h('span');
        return h('tr', {dataset: {queue: q.name}},
          h('th', {scope: 'row'}, link(`#/queue/${enc(q.name)}`, q.name, {class: 'queue-link'}), ' ', c.paused),
          tds,
          h('td', {class: 'num', 'data-label': 'oldest waiting'}, c.age));
      });
      const table = h('table', {class: 'table table-counts'},
        h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'Queue'),
          STATES.map((s) => h('th', {scope: 'col', class: 'num'}, s)),
          h('th', {scope: 'col', class: 'num', title: 'How long the oldest waiting job has waited'}, 'Oldest waiting'))),
        h('tbody', null, rows));
      clear(queuesBox).append(tableWrap(table, 'Queues and their counts'));
    }
    for (const q of queues) updateRow(q);
  }

  function updateRow(q) {
    const c = cells.get(q.name);
    if (!c) return;
    for (const s of STATES) {
      const v = Math.max(0, (q.counts && q.counts[s]) || 0);
      const text = fmtNum(v);
      if (c[s].textContent !== text) c[s].textContent = text;
      c[s].classList.toggle('zero', v === 0);
    }
    c.paused.replaceChildren(q.paused ? badge('paused', 'warn') : '');
    let age = null;
    if (q.oldest_waiting_at) age = Date.now() - new Date(q.oldest_waiting_at).getTime();
    else if (typeof q.oldest_waiting_age_ms === 'number') age = q.oldest_waiting_age_ms + (Date.now() - q.fetchedAt);
    const ageText = age === null || !(q.counts && q.counts.waiting) ? '–' : fmtDuration(Math.max(0, age));
    if (c.age.textContent !== ageText) c.age.textContent = ageText;
    if (q.oldest_waiting_at) c.age.title = `oldest waiting since ${new Date(q.oldest_waiting_at).toISOString()}`;
  }

  let soon = false;
  ctx.live((batch) => {
    if (!queues) return;
    let unknown = false;
    for (const name of batch.queues) {
      const q = queues.find((x) => x.name === name);
      if (!q) unknown = true;
      else if (applyMoves(batch, name, q.counts, q.since)) updateRow(q);
    }
    // A new queue, an event that does not say where the job came from, or events
    // missed while the stream was interrupted: ask for the truth soon (at most once
    // a second).
    if ((unknown || batch.unsure.size || batch.resync) && !soon) {
      soon = true;
      ctx.after(1000, () => {
        soon = false;
        loadQueues();
      });
    }
  });

  // ---- workers ----
  async function loadWorkers() {
    try {
      const data = await api.get('/v1/workers', {signal: ctx.signal});
      if (!ctx.alive) return;
      const ws = (data && data.workers) || [];
      const running = ws.reduce((t, w) => t + (typeof w.running === 'number' ? w.running : (w.jobs || []).length), 0);
      workersTile.set(fmtNum(ws.length), ws.length ? `${fmtNum(running)} job${running === 1 ? '' : 's'} running` : 'no worker is running');
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') workersTile.set('?', err.detail || String(err));
    }
  }

  // ---- Redis ----
  async function loadBroker() {
    try {
      const b = await api.get('/v1/broker', {signal: ctx.signal});
      if (!ctx.alive) return;
      const mem = b.maxmemory ? `${fmtBytes(b.used_memory)} of ${fmtBytes(b.maxmemory)}` : `${fmtBytes(b.used_memory)} (no maxmemory)`;
      const warnings = Array.isArray(b.warnings) ? b.warnings : [];
      fill(brokerBox,
        h('h2', {class: 'tile-title'}, 'Redis ', b.ok === false ? badge('down', 'bad') : badge('ok', 'good')),
        h('dl', {class: 'kv'},
          h('dt', null, 'version'), h('dd', null, b.version || '–'),
          h('dt', null, 'memory'), h('dd', null, mem),
          h('dt', null, 'eviction policy'), h('dd', null, b.maxmemory_policy || '–'),
          h('dt', null, 'clients'), h('dd', null, fmtNum(b.connected_clients)),
          h('dt', null, 'uptime'), h('dd', null, typeof b.uptime_s === 'number' ? fmtDuration(b.uptime_s * 1000) : '–')),
        warnings.length ? h('ul', {class: 'warnings', role: 'alert'}, warnings.map((w) => h('li', null, String(w)))) : null);
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') {
        brokerBox.replaceChildren(h('h2', {class: 'tile-title'}, 'Redis ', badge('unknown', 'warn')), errorBox(err));
      }
    }
  }

  // ---- throughput ----
  async function loadThroughput() {
    try {
      const t = await api.get('/v1/stats/throughput', {signal: ctx.signal});
      if (!ctx.alive) return;
      const pm = t.per_minute || {processed: [], failed: []};
      const ps = t.per_second || {processed: [], failed: []};
      const lastMin = (pm.processed || []).slice(-1)[0] || 0;
      const lastMinFailed = (pm.failed || []).slice(-1)[0] || 0;
      rateTile.set(fmtNum(lastMin), `${fmtNum(lastMinFailed)} failed · ${(lastMin / 60).toFixed(1)}/s`);
      chartBox.replaceChildren(
        lineChart({title: 'Per minute', unit: 'per minute', start: pm.start, step: 60, series: [
          {name: 'processed', values: pm.processed || [], cls: 'series-processed'},
          {name: 'failed', values: pm.failed || [], cls: 'series-failed'}]}),
        lineChart({title: 'Per second', unit: 'per second', start: ps.start, step: 1, series: [
          {name: 'processed', values: ps.processed || [], cls: 'series-processed'},
          {name: 'failed', values: ps.failed || [], cls: 'series-failed'}]}));
    } catch (err) {
      if (ctx.alive && err.name !== 'AbortError') {
        rateTile.set('?', '');
        chartBox.replaceChildren(errorBox(err));
      }
    }
  }

  ctx.every(QUEUES_EVERY_MS, loadQueues);
  ctx.every(5000, loadWorkers);
  ctx.every(SLOW_EVERY_MS, loadBroker);
  ctx.every(SLOW_EVERY_MS, loadThroughput);
  ctx.every(1000, () => {
    if (queues) for (const q of queues) updateRow(q); // the oldest-waiting ages tick
  });
  await Promise.all([loadQueues(), loadWorkers(), loadBroker(), loadThroughput()]);
}

function tile(title, value, href) {
  const v = h('p', {class: 'tile-value'}, value);
  const sub = h('p', {class: 'tile-sub muted'});
  const head = href ? h('h2', {class: 'tile-title'}, link(href, title)) : h('h2', {class: 'tile-title'}, title);
  const el = h('div', {class: 'tile'}, head, v, sub);
  return {el, set(value2, subText) {
    v.textContent = value2;
    sub.textContent = subText || '';
  }};
}

function emptyState() {
  const auth = session.auth ? ` \\\n     -H "Authorization: Bearer $HOPPER_TOKEN"` : '';
  const curl = `curl -s -X POST ${location.origin}/v1/jobs${auth} \\\n     -H 'Content-Type: application/json' \\\n` +
    `     -d '{"queue":"default","type":"hello","payload":{"name":"Ada"}}'`;
  return h('div', {class: 'empty-state'},
    h('h3', null, 'No jobs yet'),
    h('p', null, 'Queues appear here once a job has been enqueued. Submit your first job with curl:'),
    h('pre', {class: 'pre'}, curl),
    h('p', {class: 'muted'}, 'Then run a worker for it: ', h('code', null, 'hopper worker --queues default --plugins your-plugin.so'),
      '. Every endpoint is described in /openapi.json.'));
}
