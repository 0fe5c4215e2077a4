// The browser tests' harness: a private redis-server on a free port, the real
// `hopper server` and `hopper worker` (with the testhandlers plugin), API tokens made
// with `hopper token create`, and Debian's chromium driven by playwright-core.
//
// Every process is started through `setpriv --pdeathsig KILL`, so the kernel kills it
// if the test process dies in any way (as PR_SET_PDEATHSIG does for the C tests), and
// Hopper.stop() (also run on exit) stops them all.
//
// Paths come from the environment (tests/CMakeLists.txt sets them):
//   HOPPER_BIN              the hopper binary
//   HOPPER_TEST_PLUGIN_DIR  where testhandlers.so is
//   HOPPER_SCREENSHOT_DIR   where screenshots go (created)
//   HOPPER_CHROMIUM         the browser (default /usr/bin/chromium)

import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');

export const HOPPER_BIN = process.env.HOPPER_BIN || path.join(repo, 'build/cli/hopper');
export const PLUGIN_DIR = process.env.HOPPER_TEST_PLUGIN_DIR || path.join(repo, 'build/tests/plugins');
export const SHOT_DIR = process.env.HOPPER_SCREENSHOT_DIR || path.join(repo, 'build/browser-screenshots');
export const CHROMIUM = process.env.HOPPER_CHROMIUM || '/usr/bin/chromium';
export const TESTHANDLERS = path.join(PLUGIN_DIR, 'testhandlers.so');

let playwright;
async function loadPlaywright() {
  if (!playwright) {
    try {
      playwright = await import('playwright-core');
    } catch (err) {
      throw new Error(`playwright-core is not installed: run scripts/setup.sh (npm ci in tests/browser)\n${err.message}`);
    }
  }
  return playwright;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Polls fn() until it returns a truthy value; fails with `what` after ms.
export async function until(fn, {ms = 10000, every = 50, what = 'condition'} = {}) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(every);
  }
}

// One inline command to Redis; resolves to its first reply line, or null when Redis
// does not answer within timeoutMs.
function redisCall(port, command, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(timeoutMs);
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) {
        sock.destroy();
        resolve(buf.slice(0, buf.indexOf('\r\n')));
      }
    });
    sock.on('error', () => resolve(null));
    sock.on('timeout', () => {
      sock.destroy();
      resolve(null);
    });
  });
}
const redisPing = async (port) => (await redisCall(port, 'PING')) === '+PONG';

class Proc {
  constructor(name, argv, {env = {}, logDir}) {
    this.name = name;
    this.log = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(this.log, 'a');
    this.child = spawn('setpriv', ['--pdeathsig', 'KILL', ...argv], {
      env: {...cleanEnv(), ...env},
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    this.exited = false;
    this.exit = new Promise((resolve) => this.child.on('exit', (code, sig) => {
      this.exited = true;
      this.status = sig ? `signal ${sig}` : `exit ${code}`;
      resolve(this.status);
    }));
  }

  text() {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  async stop(ms = 8000) {
    if (this.exited) return this.status;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
    await this.exit;
    clearTimeout(t);
    return this.status;
  }

  killNow() {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

function cleanEnv() {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HOPPER_')) out[k] = v;
  return out;
}

const everything = new Set();
process.on('exit', () => {
  for (const p of everything) p.killNow();
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const p of everything) p.killNow();
    process.exit(130);
  });
}

// One test file's world: Redis, a server, workers, tokens, a browser.
export class Hopper {
  static async start({name, tokens = [], serverArgs = [], serverEnv = {}} = {}) {
    const h = new Hopper(name);
    try {
      await h.startRedis();
      for (const t of tokens) await h.token(t.scope, t.name || t.scope, t.args || []);
      await h.startServer(serverArgs, serverEnv);
    } catch (err) {
      await h.stop();
      throw err;
    }
    return h;
  }

  constructor(name) {
    this.name = name || path.basename(process.argv[1], '.test.js');
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `hopper-browser-${this.name}-`));
    this.procs = [];
    this.tokens = {};
    this.workers = [];
    this.browser = null;
    this.pages = [];
    fs.mkdirSync(SHOT_DIR, {recursive: true});
  }

  track(p) {
    this.procs.push(p);
    everything.add(p);
    return p;
  }

  async startRedis() {
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      if (await this.runRedis(port)) {
        this.redisPort = port;
        this.redisUrl = `redis://127.0.0.1:${port}`;
        return;
      }
    }
    throw new Error('could not start redis-server');
  }

  // redis-server on port with this world's directory (a dump.rdb there is loaded);
  // true once it answers.
  async runRedis(port) {
    const p = this.track(new Proc(`redis-${port}-${this.procs.length}`, ['redis-server', '--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', this.dir, '--loglevel', 'warning', '--daemonize', 'no'], {logDir: this.dir}));
    const ok = await until(async () => p.exited ? 'exited' : (await redisPing(port)) && 'up', {ms: 5000, what: 'redis-server'}).catch(() => 'timeout');
    if (ok !== 'up') p.killNow();
    else this.redis = p;
    return ok === 'up';
  }

  // A Redis outage: what Redis holds is saved (so sessions and jobs outlive it), then
  // the process is killed. restartRedis() brings it back on the same port.
  async killRedis() {
    assert.equal(await redisCall(this.redisPort, 'SAVE', 10000), '+OK', 'redis SAVE');
    this.redis.killNow();
    await this.redis.exit;
  }

  async restartRedis() {
    assert.ok(await this.runRedis(this.redisPort), `redis-server did not come back on port ${this.redisPort}`);
  }

  hopperEnv(extra = {}) {
    return {HOPPER_REDIS_URL: this.redisUrl, HOPPER_LOG_LEVEL: 'info', ...extra};
  }

  // `hopper token create --scope S --name N`: the token (also kept in this.tokens[name]).
  async token(scope, name = scope, args = []) {
    const out = execFileSync(HOPPER_BIN, ['token', 'create', '--scope', scope, '--name', name, ...args], {
      env: {...cleanEnv(), ...this.hopperEnv()}, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    });
    const token = out.split('\n')[0].trim();
    assert.match(token, /^hop_/, `hopper token create printed ${out}`);
    this.tokens[name] = token;
    if (scope === 'admin' && !this.adminToken) this.adminToken = token; // what api() sends
    return token;
  }

  async startServer(args = [], env = {}) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const blobs = fs.mkdtempSync(path.join(this.dir, 'blobs-'));
      const p = this.track(new Proc(`server-${port}`, [HOPPER_BIN, 'server', '--listen', `127.0.0.1:${port}`,
        '--redis', this.redisUrl, '--blob-dir', blobs, '--threads', '2', '--broker-threads', '2', ...args],
      {env: this.hopperEnv(env), logDir: this.dir}));
      const ok = await until(async () => {
        if (p.exited) return 'exited';
        const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
        return r && r.ok ? 'up' : null;
      }, {ms: 10000, what: 'hopper server /healthz'}).catch(() => 'timeout');
      if (ok === 'up') {
        this.server = p;
        this.port = port;
        this.base = `http://127.0.0.1:${port}`;
        return p;
      }
      if (!/address already in use|EADDRINUSE|bind/i.test(p.text())) {
        throw new Error(`hopper server did not start (${ok}):\n${p.text().slice(-4000)}`);
      }
      p.killNow();
    }
    throw new Error('could not start hopper server');
  }

  // `hopper worker --queues Q --plugins testhandlers.so`, serving.
  async startWorker(queues, {processes = 1, threads = 4, args = [], plugins = TESTHANDLERS} = {}) {
    const n = this.workers.length;
    const p = this.track(new Proc(`worker-${n}`, [HOPPER_BIN, 'worker', '--queues', queues, '--plugins', plugins,
      '--processes', String(processes), '--threads', String(threads), '--redis', this.redisUrl,
      '--blob-dir', path.join(this.dir, 'worker-blobs'), '--grace', '2s', ...args],
    {env: this.hopperEnv(), logDir: this.dir}));
    await until(() => {
      if (p.exited) throw new Error(`worker exited (${p.status}):\n${p.text().slice(-3000)}`);
      return (p.text().match(/: serving /g) || []).length >= processes;
    }, {ms: 15000, what: 'the worker to serve'});
    this.workers.push(p);
    return p;
  }

  // The API from outside the page (like curl): Bearer token, JSON.
  async api(method, p, body, {token = this.adminToken, headers = {}, expect} = {}) {
    const h = {...headers};
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const res = await fetch(this.base + p, {method, headers: h, body: body === undefined ? undefined : JSON.stringify(body)});
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (expect !== undefined) {
      assert.equal(res.status, expect, `${method} ${p}: HTTP ${res.status} ${text.slice(0, 500)}`);
    } else if (!res.ok) {
      throw new Error(`${method} ${p}: HTTP ${res.status} ${text.slice(0, 500)}`);
    }
    return data;
  }

  enqueue(job, opts) {
    return this.api('POST', '/v1/jobs', job, opts);
  }

  // Enqueues n copies of job (payload gets {i}) in batches of up to 1000.
  async enqueueMany(n, job, {concurrency = 4} = {}) {
    let next = 0;
    const one = async () => {
      while (next < n) {
        const start = next;
        const count = Math.min(1000, n - start);
        next += count;
        const jobs = [];
        for (let i = 0; i < count; i++) jobs.push({...job, payload: {...(job.payload || {}), i: start + i}});
        const r = await this.api('POST', '/v1/jobs/batch', {jobs});
        assert.equal(r.enqueued, count, `batch at ${start}: ${JSON.stringify(r).slice(0, 300)}`);
      }
    };
    await Promise.all(Array.from({length: concurrency}, one));
  }

  async queue(name) {
    return this.api('GET', `/v1/queues/${encodeURIComponent(name)}`);
  }

  // ---- the browser ----

  async launch() {
    if (this.browser) return this.browser;
    const {chromium} = await loadPlaywright();
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)`);
    this.browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage']});
    return this.browser;
  }

  // A page in a fresh context (its own cookies), watched for console errors, uncaught
  // exceptions and CSP violations.
  async page({width = 1280, height = 900, context} = {}) {
    const browser = await this.launch();
    const ctx = context || await browser.newContext({viewport: {width, height}});
    const page = await ctx.newPage();
    const problems = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push({kind: 'console', text: msg.text(), url: msg.location().url});
    });
    page.on('pageerror', (err) => problems.push({kind: 'pageerror', text: String(err && err.stack || err)}));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
      });
    });
    page.problems = problems;
    this.pages.push(page);
    return page;
  }

  url(hash = '') {
    return `${this.base}/dashboard/${hash}`;
  }

  // Logs in through the login page.
  async login(page, token, {hash = '#/'} = {}) {
    await page.goto(this.url(hash));
    await page.locator('#token').waitFor();
    await page.fill('#token', token);
    await page.keyboard.press('Enter');
    await page.locator('#nav').waitFor({state: 'visible'});
    await page.locator('#live[data-status="live"]').waitFor({timeout: 60000});
  }

  async shot(page, label) {
    const file = path.join(SHOT_DIR, `${this.name}${label ? `-${label}` : ''}.png`);
    await page.screenshot({path: file, fullPage: true});
    return file;
  }

  // Fails on any console error, uncaught exception or CSP violation so far, except
  // those matching `allow` (regexes), e.g. the 401 of GET /v1/session before login.
  assertClean(page, allow = []) {
    const bad = page.problems.filter((p) => !allow.some((a) => (typeof a === 'function' ? a(p) : a.test(p.text))));
    assert.deepEqual(bad, [], `console errors, exceptions or CSP violations:\n${JSON.stringify(bad, null, 2)}`);
  }

  // No horizontal scrolling of the page itself.
  async assertNoOverflow(page, where = '') {
    const o = await page.evaluate(() => ({sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,
      bw: document.body.scrollWidth}));
    assert.ok(o.sw <= o.cw && o.bw <= o.cw, `${where}: the page overflows sideways (scrollWidth ${o.sw}/${o.bw} > ${o.cw})`);
  }

  async stop() {
    if (this.browser) {
      await this.browser.close().catch(() => {});
      this.browser = null;
    }
    const problems = [];
    for (const p of [...this.procs].reverse()) {
      const status = await p.stop().catch((err) => `${err}`);
      everything.delete(p);
      // Hopper's own processes must stop cleanly when asked, and (in the sanitizer
      // build) without a report: the browser drives code no C test reaches.
      if (!/^(server|worker)-/.test(p.name)) continue;
      const text = p.text();
      if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(text)) {
        problems.push(`${p.name}: a sanitizer report:\n${text.slice(-4000)}`);
      } else if (status !== 'exit 0') {
        problems.push(`${p.name}: ${status} when stopped:\n${text.slice(-2000)}`);
      }
    }
    if (problems.length) {
      process.exitCode = 1;
      console.error(problems.join('\n'));
    }
    if (process.env.HOPPER_KEEP_LOGS || problems.length) {
      console.log(`logs kept in ${this.dir}`);
    } else {
      fs.rmSync(this.dir, {recursive: true, force: true});
    }
  }

  logs() {
    return this.procs.map((p) => `--- ${p.name} (${p.log}) ---\n${p.text().slice(-3000)}`).join('\n');
  }
}

// Runs body(h) as a node:test test; on failure saves a screenshot of every open page
// and prints the process logs.
export function withScreenshots(h, name, body) {
  return async (t) => {
    try {
      await body(t);
    } catch (err) {
      for (const [i, p] of h.pages.entries()) {
        if (!p.isClosed()) await h.shot(p, `${name}-FAILED-${i}`).catch(() => {});
      }
      console.error(h.logs());
      throw err;
    }
  };
}

// The 401 of GET /v1/session before logging in (the browser logs it) is expected.
export const LOGIN_401 = (p) => p.kind === 'console' && /status of 401/.test(p.text) && /\/v1\/session$/.test(p.url || '');
