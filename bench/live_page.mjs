// Does the dashboard keep up with a steady stream of events? Run by bench/live_page.sh
// (see bench/README.md), which builds hopper and the bench plugin and sets HOPPER_BIN
// and BENCH_PLUGIN.
//
// One redis-server, `hopper server`, a `hopper worker` running bench.noop, and headless
// Chromium logged in on the overview page. For each rate (events/s; a job makes three
// events: enqueued, started, succeeded) jobs are enqueued at rate/3 a second through
// POST /v1/jobs/batch for LIVE_SECS, while the page records:
//   - handling lag: when the page's main thread handles a summary of events
//     (GET /v1/events?coalesce=250ms) minus the time of the newest event in it (same
//     machine, same clock): how old the newest news is when the page gets it. It
//     includes the coalescing (up to 250 ms). A page that falls behind shows it here
//     first: messages queue up in front of a busy main thread;
//   - frame gaps: time between animation frames (16.7 ms when idle at 60 Hz);
//   - long tasks: main-thread tasks over 50 ms, summed per second of the run;
//   - catch-up: after the last enqueue, how long until the overview shows the
//     server's counts (waiting 0, active 0, succeeded as GET /v1/queues says).
// Rate 0 is the baseline: the same page with nothing happening. Rates are interleaved
// across runs so a burst of load on the machine hits one run of each, not every run
// of one. Medians of LIVE_RUNS runs are printed with min and max.

import {Hopper, sleep} from '../tests/browser/lib/harness.js';

const RATES = (process.env.LIVE_RATES || '0,1000,5000,10000').split(',').map(Number);
const RUNS = Number(process.env.LIVE_RUNS || 3);
const SECS = Number(process.env.LIVE_SECS || 15);
const PLUGIN = process.env.BENCH_PLUGIN;
if (!PLUGIN) throw new Error('BENCH_PLUGIN (the bench plugin .so) is not set: run bench/live_page.sh');
const Q = 'live';
const cell = (state) => `a.count[data-queue="${Q}"][data-state="${state}"]`;

// Installed before the dashboard's scripts run: EventSource gets one more listener,
// on the summaries, that records each one's handling lag.
function instrument() {
  const Native = window.EventSource;
  window.__lag = [];
  window.__lagOn = false;
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('summary', (msg) => {
        if (!window.__lagOn) return;
        const to = JSON.parse(msg.data).to;
        if (typeof to === 'number') window.__lag.push(Date.now() - to);
      });
    }
  };
}

function startRecording() {
  window.__lag = [];
  window.__lagOn = true;
  const rec = (window.__rec = {gaps: [], longMs: 0, stop: false});
  let last = performance.now();
  const tick = (t) => {
    rec.gaps.push(t - last);
    last = t;
    if (!rec.stop) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  rec.observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) rec.longMs += e.duration;
  });
  rec.observer.observe({type: 'longtask'});
}

function stopRecording() {
  const rec = window.__rec;
  rec.stop = true;
  rec.observer.disconnect();
  window.__lagOn = false;
  return {gaps: rec.gaps, longMs: rec.longMs, lag: window.__lag};
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs) => pct(xs, 50);

// Enqueues jobsPerSec jobs a second for secs seconds, in a batch every 100 ms; returns
// the number enqueued.
async function produce(h, jobsPerSec, secs) {
  if (!jobsPerSec) {
    await sleep(secs * 1000);
    return 0;
  }
  const tick = 100;
  const t0 = Date.now();
  let sent = 0;
  let i = 0;
  while (Date.now() - t0 < secs * 1000) {
    const due = Math.round((jobsPerSec * (Date.now() - t0 + tick)) / 1000) - sent;
    for (let left = due; left > 0;) { // a late tick owes more than one batch (1000 at most)
      const jobs = [];
      for (let k = Math.min(left, 1000); k > 0; k--) jobs.push({queue: Q, type: 'bench.noop', payload: {i: i++}});
      await h.api('POST', '/v1/jobs/batch', {jobs});
      sent += jobs.length;
      left -= jobs.length;
    }
    const next = t0 + Math.ceil((Date.now() - t0 + 1) / tick) * tick;
    await sleep(Math.max(0, next - Date.now()));
  }
  return sent;
}

async function countShown(page, state) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    return el ? Number(el.textContent.replace(/\D/g, '')) : NaN;
  }, cell(state));
}

async function caughtUp(page, h) {
  const t0 = Date.now();
  for (;;) {
    const truth = (await h.queue(Q)).counts;
    if (truth.waiting === 0 && truth.active === 0) {
      const [w, a, s] = [await countShown(page, 'waiting'), await countShown(page, 'active'), await countShown(page, 'succeeded')];
      if (w === 0 && a === 0 && s === truth.succeeded) return Date.now() - t0;
    }
    if (Date.now() - t0 > 120000) throw new Error('the page did not catch up within 120 s');
    await sleep(50);
  }
}

async function oneRun(h, page, rate) {
  const before = (await h.queue(Q)).totals.succeeded || 0;
  await page.evaluate(startRecording);
  const t0 = Date.now();
  const sent = await produce(h, rate / 3, SECS);
  const secs = (Date.now() - t0) / 1000;
  const rec = await page.evaluate(stopRecording);
  const catchUp = await caughtUp(page, h);
  const done = ((await h.queue(Q)).totals.succeeded || 0) - before;
  if (done !== sent) throw new Error(`enqueued ${sent} but ${done} succeeded`);
  return {
    rate,
    events: Math.round((3 * sent) / secs),
    lag50: median(rec.lag),
    lag99: pct(rec.lag, 99),
    gap50: median(rec.gaps),
    gap99: pct(rec.gaps, 99),
    gapMax: Math.max(...rec.gaps),
    longPerSec: rec.longMs / secs,
    catchUp,
  };
}

const fmt = (x) => (Number.isNaN(x) ? '-' : x >= 100 ? String(Math.round(x)) : x.toFixed(1));

const h = await Hopper.start({name: 'bench-live', tokens: [{scope: 'admin'}], serverArgs: ['--log-level', 'warn']});
let failed = false;
try {
  await h.enqueue({queue: Q, type: 'bench.noop'});
  await h.startWorker(Q, {processes: 1, threads: 8, plugins: PLUGIN});
  const page = await h.page();
  await page.addInitScript(instrument);
  await h.login(page, h.adminToken);
  await page.locator(cell('succeeded')).waitFor({timeout: 60000});
  await caughtUp(page, h);

  const results = [];
  for (let run = 1; run <= RUNS; run++) {
    for (const rate of RATES) {
      const r = await oneRun(h, page, rate);
      results.push(r);
      console.log(`run ${run} rate ${rate}: ${r.events} events/s sent; handling lag p50 ${fmt(r.lag50)} p99 ${fmt(r.lag99)} ms; ` +
        `frame gap p50 ${fmt(r.gap50)} p99 ${fmt(r.gap99)} max ${fmt(r.gapMax)} ms; long tasks ${fmt(r.longPerSec)} ms/s; ` +
        `caught up ${r.catchUp} ms after the last enqueue`);
    }
  }

  const cols = ['events', 'lag50', 'lag99', 'gap50', 'gap99', 'gapMax', 'longPerSec', 'catchUp'];
  const head = ['events/s sent', 'lag p50 ms', 'lag p99 ms', 'gap p50 ms', 'gap p99 ms', 'gap max ms', 'long tasks ms/s', 'catch-up ms'];
  console.log(`\nmedians of ${RUNS} runs, ${SECS} s each (min-max); handling lag = page handles a summary - its newest event's time`);
  console.log(`| aimed events/s | ${head.join(' | ')} |`);
  console.log(`|---|${head.map(() => '---').join('|')}|`);
  const base = {};
  for (const rate of RATES) {
    const rs = results.filter((r) => r.rate === rate);
    const cellsOut = cols.map((c) => {
      const xs = rs.map((r) => r[c]);
      const m = median(xs);
      if (rate === RATES[0]) base[c] = m;
      return `${fmt(m)} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`;
    });
    console.log(`| ${rate} | ${cellsOut.join(' | ')} |`);
  }
  console.log(`\nframe gap p99 against rate ${RATES[0]} (same browser, same command):`);
  for (const rate of RATES.slice(1)) {
    const m = median(results.filter((r) => r.rate === rate).map((r) => r.gap99));
    console.log(`  ${rate} events/s: x${(m / base.gap99).toFixed(2)}`);
  }
} catch (err) {
  failed = true;
  console.error(err);
  console.error(h.logs());
} finally {
  await h.stop();
}
process.exit(failed ? 1 : 0);
