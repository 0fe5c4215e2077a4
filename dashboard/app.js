// The dashboard's entry point: the session, the hash router (#/path?query), the header
// (navigation, live indicator, who is logged in, log out) and the life of each page
// (its timers, live subscriptions and requests end when the page is left).

import {session, loadSession, logout, onUnauthorized, isAdmin} from './api.js';
import * as live from './live.js';
import {h, clear, notify, errorBox, errorText} from './ui.js';
import * as overview from './pages/overview.js';
import * as queue from './pages/queue.js';
import * as jobs from './pages/jobs.js';
import * as job from './pages/job.js';
import * as workers from './pages/workers.js';
import * as schedules from './pages/schedules.js';
import * as audit from './pages/audit.js';
import * as loginPage from './pages/login.js';

const ROUTES = [
  [/^\/?$/, overview, 'overview'],
  [/^\/queues?\/([^/]+)$/, queue, 'overview'],
  [/^\/jobs$/, jobs, 'jobs'],
  [/^\/jobs?\/([^/]+)$/, job, 'jobs'],
  [/^\/workers$/, workers, 'workers'],
  [/^\/workers\/([^/]+)$/, workers, 'workers'],
  [/^\/schedules$/, schedules, 'schedules'],
  [/^\/schedules\/([^/]+)$/, schedules, 'schedules'],
  [/^\/audit$/, audit, 'audit'],
];

const main = document.getElementById('main');
let current = null; // the page context
let loggedIn = false;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return {path, query};
}

// What a page gets: a signal aborted when it is left, timers and live subscriptions
// that end with it, and whether it is still the page on screen.
function newContext() {
  const ctrl = new AbortController();
  const cleanups = [];
  const ctx = {
    signal: ctrl.signal,
    get alive() {
      return !ctrl.signal.aborted;
    },
    admin: isAdmin(),
    session,
    every(ms, fn) {
      const t = setInterval(() => {
        if (!document.hidden) fn();
      }, ms);
      cleanups.push(() => clearInterval(t));
    },
    after(ms, fn) {
      const t = setTimeout(fn, ms);
      cleanups.push(() => clearTimeout(t));
    },
    live(fn) {
      cleanups.push(live.subscribe(fn));
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
    destroy() {
      ctrl.abort();
      for (const fn of cleanups.splice(0)) fn();
    },
  };
  return ctx;
}

function setActiveNav(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (current) current.destroy();
  current = null;
  const {path, query} = parseHash();
  if (!loggedIn) return showLogin();
  if (path === '/login') {
    location.replace('#/');
    return;
  }
  let match = null;
  for (const [re, page, nav] of ROUTES) {
    const m = path.match(re);
    if (m) {
      match = {page, nav, params: m.slice(1).map(decodeURIComponent)};
      break;
    }
  }
  const ctx = newContext();
  current = ctx;
  clear(main);
  if (!match) {
    setActiveNav('');
    main.append(h('h1', {tabindex: -1}, 'Not found'), h('p', null, 'No page here. ', h('a', {href: '#/'}, 'Go to the overview.')));
    focusHeading();
    return;
  }
  setActiveNav(match.nav);
  try {
    await match.page.render(main, ctx, match.params, query);
  } catch (err) {
    if (!ctx.alive || (err && err.name === 'AbortError')) return;
    if (err && err.status === 401) return; // the login page is on its way
    main.append(errorBox(err));
  }
  if (ctx.alive) focusHeading();
}

let lastPath = null;
function focusHeading() {
  // Move focus to the new page's heading, for keyboards and screen readers, but
  // only when the path changed (not for a filter change on the same page).
  const {path} = parseHash();
  if (path === lastPath) return;
  lastPath = path;
  // A page renders its form before its data arrives: someone who already clicked
  // into it and started typing keeps the focus (and the Enter they are about to press).
  const active = document.activeElement;
  if (active && active !== document.body && main.contains(active)) return;
  window.scrollTo(0, 0);
  const h1 = main.querySelector('h1');
  if (h1) h1.focus({preventScroll: true});
}

function updateHeader() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  const out = document.getElementById('logout');
  const liveEl = document.getElementById('live');
  nav.hidden = !loggedIn;
  liveEl.hidden = !loggedIn;
  // A token limited to some queues may not read the audit log (it covers every queue).
  const limited = Boolean(session.queues) && session.queues !== '*';
  nav.querySelector('a[data-route="audit"]').hidden = limited;
  if (loggedIn && session.auth) {
    who.hidden = false;
    who.replaceChildren(
      h('span', {class: 'who-name'}, session.name || session.token_id || 'token'),
      ' ',
      h('span', {class: ['badge', session.scope === 'admin' ? 'badge-admin' : 'badge-read']}, session.scope));
    who.title = session.expires_at ? `session ends ${new Date(session.expires_at).toLocaleString()}` : '';
    out.hidden = false;
  } else if (loggedIn) {
    who.hidden = false;
    who.replaceChildren(h('span', {class: 'badge badge-warn', title: 'the server runs without authentication (loopback only)'}, 'no auth'));
    out.hidden = true;
  } else {
    who.hidden = true;
    out.hidden = true;
  }
}

function showLogin(message) {
  if (current) current.destroy();
  current = null;
  loggedIn = false;
  live.stop();
  updateHeader();
  clear(main);
  setActiveNav('');
  lastPath = null;
  loginPage.render(main, {
    message,
    done: () => {
      loggedIn = true;
      startLive();
      updateHeader();
      if (parseHash().path === '/login') location.replace('#/');
      route();
    },
  });
}

function startLive() {
  live.start({
    // The stream broke for good: maybe the session ended. Check, and show the login if so.
    lost: () => {
      loadSession().then((s) => {
        if (!s && loggedIn) showLogin('Your session has ended. Log in again.');
      }).catch(() => {});
    },
  });
}

function wireLiveIndicator() {
  const el = document.getElementById('live');
  const text = el.querySelector('.live-text');
  live.onStatus((status, rate) => {
    el.dataset.status = status;
    let label = {live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', off: 'offline',
      interrupted: 'no live updates: Redis unreachable'}[status] || status;
    if (status === 'live' && rate >= 1) label += ` · ${rate >= 1000 ? `${(rate / 1000).toFixed(1)}k` : Math.round(rate)} events/s`;
    text.textContent = label;
    el.title = {
      live: 'Updates arrive through the live event stream',
      interrupted: 'The server cannot reach Redis, so no events arrive; what is shown may be old. It resumes by itself.',
    }[status] || 'The live event stream is not connected; retrying';
  });
}

async function boot() {
  wireLiveIndicator();
  onUnauthorized(() => {
    if (loggedIn) showLogin('Your session has ended. Log in again.');
  });
  const out = document.getElementById('logout');
  out.addEventListener('click', async () => {
    out.disabled = true;
    loggedIn = false; // a 401 from a request still on its way is no "session ended"
    try {
      await logout();
    } catch (err) {
      notify(errorText(err), 'error');
    } finally {
      out.disabled = false;
    }
    showLogin('You are logged out.');
  });
  window.addEventListener('hashchange', () => route());
  let s;
  try {
    s = await loadSession();
  } catch (err) {
    clear(main);
    main.append(h('h1', null, 'Hopper'), errorBox(err), h('p', null, 'Reload the page to try again.'));
    return;
  }
  if (!s) return showLogin();
  loggedIn = true;
  updateHeader();
  startLive();
  route();
}

boot();
