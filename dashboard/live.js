// The live feed: one EventSource on GET /v1/events for the whole dashboard. Events are
// never rendered one by one: each is folded into a batch (the count moves of each
// queue, the last event of each job, totals), and the batch is handed to the pages
// at most FLUSH_MS apart, so 5,000 events a second cost four small DOM updates a
// second. The pages also refetch the truth (GET /v1/queues) every few seconds, since
// events are best effort and some (retried, canceled, deleted) do not say which state
// the job left. A count is the truth of the last refetch plus the moves of events
// newer than that refetch (applyMoves): an event the refetch already saw is not
// counted twice. When the server's own event subscription fails (Redis unreachable)
// it says so with a "stream" event: the status becomes 'interrupted' until it
// resumes, and the batch after that has `resync` set, since events were missed.

const FLUSH_MS = 250;
const EVENT_NAMES = ['enqueued', 'started', 'progress', 'succeeded', 'failed', 'dead', 'canceled', 'retried', 'deleted'];
const MAX_JOBS_PER_BATCH = 2000;
const MAX_MOVES_PER_BATCH = 50000;

// event -> [state it left, state it entered]; null when the event does not say.
const MOVES = {
  enqueued: (e) => [null, e.state || 'waiting'],
  started: () => ['waiting', 'active'],
  succeeded: () => ['active', 'succeeded'],
  failed: () => ['active', 'failed'],
  dead: () => ['active', 'dead'],
  canceled: () => [null, 'canceled'],
  retried: (e) => [null, e.state || 'waiting'],
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
  // moves: [queue, state left or null, state entered or null, at (server ms)]
  return {events: 0, moves: [], jobs: new Map(), queues: new Set(), unsure: new Set(), overflow: false, resync: false, kinds: {}};
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

// Applies the batch's moves for queue q to counts ({state: n}), skipping events at or
// before `since` (server ms: when the counts were fetched). Returns whether any applied.
export function applyMoves(batch, q, counts, since = 0) {
  let changed = false;
  for (const [queue, from, to, at] of batch.moves) {
    if (queue !== q || at <= since) continue;
    if (from) counts[from] = Math.max(0, (counts[from] || 0) - 1);
    if (to) counts[to] = (counts[to] || 0) + 1;
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

function onEvent(msg) {
  let e;
  try {
    e = JSON.parse(msg.data);
  } catch {
    return;
  }
  if (!e || typeof e !== 'object') return;
  const kind = e.event || msg.type;
  rateCount++;
  const b = batch;
  b.events++;
  b.kinds[kind] = (b.kinds[kind] || 0) + 1;
  const at = typeof e.at === 'number' ? e.at : Date.parse(e.at) || 0;
  if (at) sampleSkew(at);
  if (typeof e.queue === 'string') {
    b.queues.add(e.queue);
    const move = MOVES[kind];
    if (move) {
      const [from, to] = move(e);
      if ((from || to) && b.moves.length < MAX_MOVES_PER_BATCH) b.moves.push([e.queue, from, to, at]);
      else if (from || to) b.unsure.add(e.queue);
    }
    if (UNSURE.has(kind)) b.unsure.add(e.queue);
  }
  if (typeof e.id === 'string') {
    if (b.jobs.size < MAX_JOBS_PER_BATCH || b.jobs.has(e.id)) b.jobs.set(e.id, e);
    else b.overflow = true;
  }
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
  const es = new EventSource('/v1/events', {withCredentials: true});
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
  es.addEventListener('message', onEvent);
  for (const name of EVENT_NAMES) es.addEventListener(name, onEvent);
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
