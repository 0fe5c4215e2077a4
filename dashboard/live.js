// The live feed: one EventSource on GET /v1/events?coalesce=250ms for the whole
// dashboard. The server does not send each job event: it sends a "summary" at most
// every 250 ms (per queue: how many events of each kind, by the state each left its
// job in, and the span of their times; the first 100 job ids), so a burst of 100,000
// events a second costs the page four small messages a second. Summaries (and the
// stream's own news) are folded into a batch handed to the pages at most FLUSH_MS
// apart. The pages also refetch the truth (GET /v1/queues) every few seconds, since
// events are best effort and some (retried, canceled, deleted) do not say which state
// the job left. A count is the truth of the last refetch plus the moves newer than
// that refetch (applyMoves): what the refetch already saw is not counted twice. When
// the server's own event subscription fails (Redis unreachable) it says so with a
// "stream" event: the status becomes 'interrupted' until it resumes, and the batch
// after that has `resync` set, since events were missed.

const EVENTS_URL = '/v1/events?coalesce=250ms';
const FLUSH_MS = 50;

// event -> [state it left, state it entered]; null when the event does not say.
const MOVES = {
  enqueued: (state) => [null, state || 'waiting'],
  started: () => ['waiting', 'active'],
  succeeded: () => ['active', 'succeeded'],
  failed: () => ['active', 'failed'],
  dead: () => ['active', 'dead'],
  canceled: () => [null, 'canceled'],
  retried: (state) => [null, state || 'waiting'],
  deleted: () => [null, null],
  progress: () => [null, null],
};
// Events after which the counts are known to be unsure: ask for the truth soon.
const UNSURE = new Set(['canceled', 'retried', 'deleted']);

let source = null;
let status = 'off'; // off | connecting | live | reconnecting | interrupted
let batch = newBatch();
let flushTimer = 0;
let reconnectTimer = 0;
let retryMs = 1000;
let rate = 0;
let rateCount = 0;
let rateTimer = 0;
const subscribers = new Set();
const statusListeners = new Set();
let onLost = null; // called when the stream fails: the app checks the session

function newBatch() {
  // moves: [queue, state left or null, state entered or null, how many, first and
  // last event time (server ms)]; jobs: ids the events were about (overflow: and
  // others); perQueue: queue -> how many events.
  return {events: 0, moves: [], jobs: new Set(), perQueue: new Map(), queues: new Set(), unsure: new Set(),
    overflow: false, resync: false, kinds: {}};
}

// The server's clock, as the events tell it: skew = the largest (event time - time
// received) seen lately, which is the clock difference less the smallest delivery
// delay. Used to know which events a refetch has already seen.
let skewNow = -Infinity;
let skewPrev = -Infinity;
let skewRotated = Date.now();
function sampleSkew(at) {
  const now = Date.now();
  if (now - skewRotated > 30000) {
    skewPrev = skewNow;
    skewNow = -Infinity;
    skewRotated = now;
  }
  skewNow = Math.max(skewNow, at - now);
}
export function serverNow() {
  const s = Math.max(skewNow, skewPrev);
  return Date.now() + (Number.isFinite(s) ? s : 0);
}

// Applies the batch's moves for queue q to counts ({state: n}), leaving out events at
// or before `since` (server ms: when the counts were fetched). A summary whose span
// straddles `since` counts in proportion to the part after it (the refetch every few
// seconds mends the estimate). Returns whether any applied.
export function applyMoves(batch, q, counts, since = 0) {
  let changed = false;
  for (const [queue, from, to, n, first, last] of batch.moves) {
    if (queue !== q || last <= since) continue;
    const k = first > since ? n : Math.round((n * (last - since)) / Math.max(1, last - first));
    if (!k) continue;
    if (from) counts[from] = Math.max(0, (counts[from] || 0) - k);
    if (to) counts[to] = (counts[to] || 0) + k;
    changed = true;
  }
  return changed;
}

function setStatus(s) {
  if (s === status) return;
  status = s;
  for (const fn of statusListeners) fn(status, rate);
}

function scheduleFlush() {
  if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
}

function flush() {
  flushTimer = 0;
  if (!batch.events) return;
  const b = batch;
  batch = newBatch();
  for (const fn of subscribers) {
    try {
      fn(b);
    } catch (err) {
      console.warn('live subscriber failed', err);
    }
  }
}

function onSummary(msg) {
  let e;
  try {
    e = JSON.parse(msg.data);
  } catch {
    return;
  }
  if (!e || typeof e !== 'object' || typeof e.count !== 'number') return;
  rateCount += e.count;
  const b = batch;
  b.events += e.count;
  if (typeof e.to === 'number') sampleSkew(e.to);
  for (const [queue, sum] of Object.entries(e.queues || {})) {
    b.queues.add(queue);
    b.perQueue.set(queue, (b.perQueue.get(queue) || 0) + (sum.count || 0));
    for (const [kind, byState] of Object.entries(sum.events || {})) {
      const move = MOVES[kind];
      if (UNSURE.has(kind) || !move) b.unsure.add(queue);
      for (const [state, n] of Object.entries(byState)) {
        b.kinds[kind] = (b.kinds[kind] || 0) + n;
        const [from, to] = move ? move(state === 'none' ? null : state) : [null, null];
        if (from || to) b.moves.push([queue, from, to, n, sum.from, sum.to]);
      }
    }
  }
  for (const id of e.jobs || []) b.jobs.add(id);
  if (e.jobs_omitted) b.overflow = true;
  if (e.queues_omitted) b.resync = true; // queues this summary had no room for
  scheduleFlush();
}

// The stream's own news: its events stopped ("interrupted": the server lost Redis)
// or came back ("resumed": what happened in between was not sent, so re-read).
function onStream(msg) {
  let e;
  try {
    e = JSON.parse(msg.data);
  } catch {
    return;
  }
  if (e && e.state === 'interrupted') {
    setStatus('interrupted');
  } else if (e && e.state === 'resumed') {
    setStatus('live');
    batch.resync = true;
    batch.events++;
    scheduleFlush();
  }
}

function open() {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  if (source) source.close();
  setStatus(status === 'off' ? 'connecting' : 'reconnecting');
  const es = new EventSource(EVENTS_URL, {withCredentials: true});
  source = es;
  es.addEventListener('open', () => {
    if (source !== es) return;
    retryMs = 1000;
    setStatus('live');
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. a 401 or 5xx answer): we retry with a backoff.
      es.close();
      source = null;
      setStatus('reconnecting');
      if (onLost) onLost();
      reconnectTimer = setTimeout(open, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    } else {
      setStatus('reconnecting'); // the browser reconnects by itself (retry: from the server)
    }
  });
  es.addEventListener('stream', onStream);
  es.addEventListener('summary', onSummary);
}

export function start({lost} = {}) {
  onLost = lost || null;
  if (!rateTimer) {
    rateTimer = setInterval(() => {
      rate = rateCount / 2;
      rateCount = 0;
      for (const fn of statusListeners) fn(status, rate);
    }, 2000);
  }
  if (!source) open();
}

export function stop() {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  clearInterval(rateTimer);
  rateTimer = 0;
  if (source) source.close();
  source = null;
  batch = newBatch();
  setStatus('off');
}

// fn(batch) at most every FLUSH_MS while events come. Returns the unsubscribe.
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  fn(status, rate);
  return () => statusListeners.delete(fn);
}

export function liveStatus() {
  return status;
}
