// DOM helpers. Everything on the page is built here from data with createElement and
// textContent: no HTML string ever carries a value from the API, so a payload, an
// error message or a queue name cannot inject markup (and the CSP forbids inline
// scripts and style attributes anyway).

export const STATES = ['waiting', 'scheduled', 'active', 'succeeded', 'failed', 'dead'];
export const ALL_STATES = [...STATES, 'canceled'];

const SVG_NS = 'http://www.w3.org/2000/svg';

// h('a', {href: '#/', class: 'x', on: {click: fn}}, 'text', child, [more])
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'open', 'indeterminate']);

function applyProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (PROPS.has(k)) el[k] = v;
    else if (k === 'style') throw new Error('no style attributes: the CSP forbids them');
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// Replaces el's children (null, undefined and false are skipped, unlike replaceChildren).
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function link(href, text, props = {}) {
  return h('a', {...props, href}, text);
}

export function button(text, onClick, props = {}) {
  const cls = ['btn', props.class];
  const b = h('button', {...props, type: props.type || 'button', class: cls.filter(Boolean).join(' ')}, text);
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

// Runs an async action from a button: the button is disabled meanwhile, errors are
// shown as a notice. Returns what fn returned, or undefined after an error.
export async function busy(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (err) {
    if (err && err.name === 'AbortError') return undefined;
    notify(errorText(err), 'error');
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

export function errorText(err) {
  if (!err) return 'unknown error';
  if (err.detail) return err.status ? `${err.detail} (HTTP ${err.status})` : err.detail;
  return err.message || String(err);
}

// ---- numbers and times ----

const nf = new Intl.NumberFormat();
export function fmtNum(n) {
  return n === null || n === undefined || Number.isNaN(n) ? '–' : nf.format(n);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

// 3 s, 4 min 12 s, 2 h 5 min, 3 d 4 h
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  let out;
  if (s < 1) out = `${Math.abs(Math.round(ms))} ms`;
  else if (s < 60) out = `${s} s`;
  else if (s < 3600) out = `${Math.floor(s / 60)} min ${s % 60} s`;
  else if (s < 86400) out = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else out = `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  return neg ? `-${out}` : out;
}

export function toDate(t) {
  if (t === null || t === undefined || t === '') return null;
  const d = typeof t === 'number' ? new Date(t) : new Date(String(t));
  return Number.isNaN(d.getTime()) ? null : d;
}

const dtf = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

export function fmtLocal(t) {
  const d = toDate(t);
  return d ? dtf.format(d) : '–';
}

export function fmtUTC(t) {
  const d = toDate(t);
  return d ? d.toISOString().replace('T', ' ').replace('Z', ' UTC') : '';
}

// A <time> in the viewer's zone, with the UTC time on hover (the title).
export function timeEl(t, opts = {}) {
  const d = toDate(t);
  if (!d) return h('span', {class: 'muted'}, '–');
  let text = fmtLocal(d);
  if (opts.relative) text += ` (${relative(d)})`;
  return h('time', {datetime: d.toISOString(), title: fmtUTC(d)}, text);
}

export function relative(t, now = Date.now()) {
  const d = toDate(t);
  if (!d) return '–';
  const diff = d.getTime() - now;
  if (Math.abs(diff) < 1000) return 'now';
  return diff > 0 ? `in ${fmtDuration(diff)}` : `${fmtDuration(-diff)} ago`;
}

// ---- values ----

export function badge(text, kind) {
  return h('span', {class: ['badge', kind ? `badge-${kind}` : null]}, text);
}

export function stateBadge(state) {
  return h('span', {class: ['state', `state-${state}`]}, state);
}

// Long text: the first line (cut), the rest behind a <details>.
export function longText(text, limit = 160) {
  const s = text === null || text === undefined ? '' : String(text);
  if (s.length <= limit && !s.includes('\n')) return h('span', {class: 'wrap'}, s);
  const first = s.split('\n', 1)[0];
  const head = first.length > limit ? `${first.slice(0, limit)}…` : `${first}…`;
  return h('details', {class: 'long'}, h('summary', null, head), h('pre', {class: 'pre'}, s));
}

// JSON pretty-printed (big integers as written, see api.js), collapsed when large.
export function jsonBlock(value, {label = 'JSON', openBelow = 1500, raw} = {}) {
  const text = raw !== undefined ? raw : prettyJSON(value);
  const pre = h('pre', {class: 'pre json'}, text);
  if (text.length <= openBelow) return pre;
  return h('details', {class: 'long'},
    h('summary', null, `${label}: ${fmtBytes(text.length)}, ${text.split('\n').length} lines`), pre);
}

// JSON.stringify(v, null, 2), except that a RawNumber (an integer too big for a
// double, kept by api.js as its source text) is written as it came.
export function prettyJSON(v, indent = '') {
  if (v === undefined) return 'null';
  if (v && v.rawNumber !== undefined) return v.rawNumber;
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return `[\n${v.map((x) => inner + prettyJSON(x, inner)).join(',\n')}\n${indent}]`;
  }
  const keys = Object.keys(v);
  if (!keys.length) return '{}';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${prettyJSON(v[k], inner)}`).join(',\n')}\n${indent}}`;
}

// ---- notices ----

// message: text, or nodes (e.g. a link to what was made).
export function notify(message, kind = 'info', ms = kind === 'error' ? 10000 : 5000) {
  const box = document.getElementById('notices');
  if (!box) return;
  const close = h('button', {type: 'button', class: 'notice-close', 'aria-label': 'Dismiss'}, '×');
  const n = h('div', {class: ['notice', `notice-${kind}`], role: kind === 'error' ? 'alert' : 'status'},
    h('span', {class: 'wrap'}, message), close);
  close.addEventListener('click', () => n.remove());
  box.append(n);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(() => n.remove(), ms);
}

export function errorBox(err) {
  return h('div', {class: 'banner banner-error', role: 'alert'}, errorText(err));
}

export function emptyRow(cols, text) {
  return h('tr', {class: 'empty'}, h('td', {colspan: cols}, text));
}

export function tableWrap(table, label) {
  // The box scrolls sideways on a narrow screen; the page itself never does.
  return h('div', {class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: 0}, table);
}

export function table(headers, rows, {label = 'table', cls} = {}) {
  const t = h('table', {class: ['table', cls]},
    h('thead', null, h('tr', null, headers.map((x) => h('th', {scope: 'col'}, x)))),
    h('tbody', null, rows));
  return tableWrap(t, label);
}

export function section(title, ...children) {
  return h('section', {class: 'card'}, h('h2', null, title), ...children);
}

export function pageHeader(title, ...extra) {
  return h('div', {class: 'page-head'}, h('h1', {tabindex: -1}, title), h('div', {class: 'page-actions'}, extra));
}

// ---- dialogs ----

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), ' +
  'textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';

// A modal <dialog>: focus is kept inside (Tab and Shift+Tab cycle), Escape closes
// it, and focus returns to where it was. build(dialog, close) fills it and returns
// the element to focus first; close(value) resolves the promise.
export function openDialog(title, build) {
  return new Promise((resolve) => {
    const before = document.activeElement;
    const heading = h('h2', {id: `dlg-${Math.random().toString(36).slice(2)}`}, title);
    const dlg = h('dialog', {class: 'dialog', 'aria-labelledby': heading.id});
    let done = false;
    const close = (value) => {
      if (done) return;
      done = true;
      if (dlg.open) dlg.close();
      dlg.remove();
      // Back to where the focus was; if a refresh replaced that button meanwhile, to
      // its successor (the same data-action).
      let back = before;
      if (back && !document.contains(back) && back.dataset && back.dataset.action) {
        back = document.querySelector(`main [data-action="${CSS.escape(back.dataset.action)}"]`);
      }
      if (back && back.focus && document.contains(back)) back.focus();
      resolve(value);
    };
    dlg.append(heading);
    const first = build(dlg, close);
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(undefined);
    });
    dlg.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        close(undefined);
        return;
      }
      if (e.key !== 'Tab') return;
      const items = [...dlg.querySelectorAll(FOCUSABLE)].filter((x) => x.offsetParent !== null || x === document.activeElement);
      if (!items.length) return;
      const i = items.indexOf(document.activeElement);
      if (e.shiftKey && (i <= 0)) {
        e.preventDefault();
        items[items.length - 1].focus();
      } else if (!e.shiftKey && (i === -1 || i === items.length - 1)) {
        e.preventDefault();
        items[0].focus();
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    (first || dlg.querySelector(FOCUSABLE) || dlg).focus();
  });
}

// Resolves true when confirmed.
export function confirmDialog({title, body, confirm = 'Confirm', danger = false}) {
  return openDialog(title, (dlg, close) => {
    const ok = button(confirm, () => close(true), {class: danger ? 'btn-danger' : 'btn-primary'});
    const cancel = button('Cancel', () => close(false));
    append(dlg, [h('div', {class: 'dialog-body'}, body), h('div', {class: 'dialog-actions'}, cancel, ok)]);
    return cancel;
  }).then((v) => v === true);
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

export function encode(s) {
  return encodeURIComponent(s);
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}
