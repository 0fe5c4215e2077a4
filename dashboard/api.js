// The public /v1 API, through fetch with the session cookie. Every request that is not
// a GET carries the session's CSRF token; a 401 anywhere means the session is gone
// and the login page is shown.

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

// The session object from GET/POST /v1/session: {auth, scope, queues, name, token_id, csrf, ...}.
export const session = {auth: null, scope: 'read', queues: '*', csrf: '', name: '', token_id: '', expires_at: null};

const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

export function isAdmin() {
  return session.scope === 'admin';
}

// A wrapper for an integer too large for a double: shown and sent back as written.
class RawNumber {
  constructor(source) {
    this.rawNumber = source;
  }
  toJSON() {
    return Number(this.rawNumber);
  }
}

// JSON.parse, keeping integers beyond 2^53 as their source text where the browser
// gives the reviver the source (Chromium does).
export function parseJSON(text) {
  return JSON.parse(text, function reviver(key, value, context) {
    if (typeof value === 'number' && context && typeof context.source === 'string' &&
        !Number.isSafeInteger(value) && /^-?\d+$/.test(context.source)) {
      return new RawNumber(context.source);
    }
    return value;
  });
}

async function request(method, path, {body, raw, signal, quiet401 = false} = {}) {
  const headers = {Accept: 'application/json'};
  const init = {method, headers, credentials: 'same-origin', cache: 'no-store', signal};
  if (raw !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = raw;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, `the server cannot be reached (${err && err.message ? err.message : err})`, null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = parseJSON(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const detail = data && typeof data === 'object' && typeof data.detail === 'string' && data.detail
      ? data.detail
      : `${res.status} ${res.statusText || 'error'}`;
    const err = new ApiError(res.status, detail, data);
    if (res.status === 401 && !quiet401) for (const fn of unauthorizedListeners) fn(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path, opts) => request('GET', path, opts),
  post: (path, body, opts = {}) => request('POST', path, {...opts, body}),
  postRaw: (path, raw, opts = {}) => request('POST', path, {...opts, raw}),
  put: (path, body, opts = {}) => request('PUT', path, {...opts, body}),
  del: (path, opts) => request('DELETE', path, opts),
};

function setSession(s) {
  Object.assign(session, {auth: null, scope: 'read', queues: '*', csrf: '', name: '', token_id: '', expires_at: null}, s || {});
}

// GET /v1/session: the session, or null when not logged in (401).
export async function loadSession() {
  try {
    setSession(await request('GET', '/v1/session', {quiet401: true}));
    return session;
  } catch (err) {
    if (err.status === 401) {
      setSession(null);
      return null;
    }
    throw err;
  }
}

export async function login(token) {
  setSession(await request('POST', '/v1/session', {body: {token}, quiet401: true}));
  return session;
}

export async function logout() {
  try {
    await request('DELETE', '/v1/session', {quiet401: true});
  } finally {
    setSession(null);
  }
}

export const enc = encodeURIComponent;
