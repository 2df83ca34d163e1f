// Helpers of the end-to-end tests: the processes they start (`ferrows
// serve` nodes, and through tools/test-support/ redis-server and headless
// Chromium), bounded waits, and the steps a user takes in the demo.
//
// Every process is started in its own process group and killed (the whole
// group) when the tests end, however they end (tools/test-support/process.mjs);
// its pid also goes to $FERROWS_TEST_PIDFILE so that e2e/run.sh kills what is
// left if node itself dies.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../tools/test-support/chromium.mjs';
import { Proc, bounded as boundedBy } from '../tools/test-support/process.mjs';
import { RedisServer } from '../tools/test-support/redis.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FERROWS = process.env.FERROWS_BIN ?? path.join(ROOT, 'target/release/ferrows');
/** The bound of every single wait, in milliseconds. */
export const WAIT = Number(process.env.E2E_WAIT_MS ?? 15_000);

// --- waits -------------------------------------------------------------------

/** `promise`, or an error naming `what` once `ms` have passed. */
export function bounded(what, promise, ms = WAIT) {
  return boundedBy(what, promise, ms);
}

/** Polls `check` (in node) until it returns a value other than undefined/false. */
export async function until(what, check, ms = WAIT) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- servers -----------------------------------------------------------------

/** Every process the current test started, for its failure report. */
export const started = [];

/** A `ferrows serve` node; `port` 0 picks a free one. */
export class FerrowsNode {
  constructor(name, args = []) {
    this.name = name;
    this.args = args;
    this.port = 0;
    this.proc = null;
  }

  /** Starts the node (on its previous port after a stop) and waits until it listens. */
  async start() {
    this.proc = new Proc(this.name, FERROWS, ['serve', '--host', '127.0.0.1', '--port', String(this.port), ...this.args]);
    started.push(this.proc);
    const m = await this.proc.waitOutput('listening', /listening on http:\/\/127\.0\.0\.1:(\d+)/, WAIT);
    this.port = Number(m[1]);
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  stop(signal) {
    return this.proc.stop(signal, WAIT);
  }

  kill() {
    return this.proc?.kill();
  }

  /** POST /api/publish with the API key `k`; returns the result ({offset, epoch}). */
  async publish(channel, data, key = 'k') {
    const res = await bounded(
      `${this.name}: POST /api/publish`,
      fetch(`${this.url}/api/publish`, {
        method: 'POST',
        headers: { Authorization: `apikey ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel, data }),
      }),
    );
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${this.name}: POST /api/publish answered ${res.status}: ${body}`);
    return JSON.parse(body).result;
  }
}

/** A redis-server on a free port of 127.0.0.1, without persistence; stop() kills it. */
export async function startRedis() {
  const redis = new RedisServer({ wait: WAIT });
  try {
    await redis.start();
  } finally {
    if (redis.proc) started.push(redis.proc);
  }
  return redis;
}

// --- Chromium ----------------------------------------------------------------

/** Debian's headless Chromium with a fresh profile (tools/test-support/chromium.mjs). */
export class Browser {
  async start() {
    this.chromium = await launchChromium({ from: import.meta.url, install: 'run e2e/install.sh (as root)', wait: WAIT });
    started.push(this.chromium.proc);
    this.browser = this.chromium.browser;
    return this;
  }

  /** A new page in a browser context of its own (its own storage). */
  async newPage({ width = 1280, height = 800 } = {}) {
    const context = await this.browser.newContext({
      viewport: { width, height },
      colorScheme: 'light',
      reducedMotion: 'reduce',
      locale: 'en-US',
      timezoneId: 'UTC',
    });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(`uncaught: ${e.message}`));
    return page;
  }

  async close() {
    await this.chromium?.close();
  }
}

// --- the demo, as a user drives it ---------------------------------------------

/** Runs `fn` in the page until it returns a truthy value; the error names `what`
 * and says what the page shows. */
export async function waitPage(page, what, fn, arg) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 })).jsonValue();
  } catch (e) {
    const state = await describePage(page).catch(() => '(page unavailable)');
    throw new Error(`${page.label ?? 'page'}: ${what}: ${e.message.split('\n')[0]}\n${state}`);
  }
}

/** What the page shows: status, room, presence, messages. */
export async function describePage(page) {
  const s = await bounded(
    'read the page',
    page.evaluate(() => {
      const text = (sel) => document.querySelector(sel)?.textContent ?? null;
      return {
        status: `${document.getElementById('status')?.dataset.state} / ${text('#status')}`,
        room: text('#room-title'),
        note: text('#room-note'),
        error: document.getElementById('error')?.hidden ? null : text('#error'),
        clients: text('#clients-count'),
        presence: [...document.querySelectorAll('#presence li')].map((li) => li.textContent),
        messages: [...document.querySelectorAll('#messages .message')].map(
          (m) => `${m.querySelector('.author')?.textContent}: ${m.querySelector('.text')?.textContent}`,
        ),
      };
    }),
    3000,
  );
  return Object.entries(s)
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
    .join('\n');
}

/** Opens the demo and waits until it is connected. */
export async function openDemo(page, base, label, query = '') {
  page.label = label;
  await page.goto(`${base}/${query}`, { timeout: WAIT });
  await waitConnected(page);
}

export function waitConnected(page) {
  return waitPage(page, 'status "connected"', () => {
    const s = document.getElementById('status');
    return s.dataset.state === 'connected' && s.textContent.trim().startsWith('connected');
  });
}

/** Waits until the page is connected over `transport` ("websocket", "sse",
 * "longpoll"), as its status says; `ms` bounds the wait (a fallback takes
 * the client's timeout per transport that stays silent). */
export async function waitTransport(page, transport, ms = WAIT) {
  const names = { websocket: 'WebSocket', sse: 'Server-Sent Events', longpoll: 'long polling' };
  const what = `status "connected · ${names[transport]}"`;
  try {
    await page.waitForFunction(
      ({ transport, name }) => {
        const s = document.getElementById('status');
        return s.dataset.state === 'connected' && s.dataset.transport === transport && s.textContent.trim() === `connected · ${name}`;
      },
      { transport, name: names[transport] },
      { timeout: ms, polling: 50 },
    );
  } catch (e) {
    const state = await describePage(page).catch(() => '(page unavailable)');
    throw new Error(`${page.label ?? 'page'}: ${what}: ${e.message.split('\n')[0]}\n${state}`);
  }
}

/** The messages shown: [{author, text, offset}]. */
export function messages(page) {
  return page.$$eval('#messages .message', (els) =>
    els.map((m) => ({
      author: m.querySelector('.author')?.textContent ?? '',
      text: m.querySelector('.text')?.textContent ?? '',
      offset: m.dataset.offset,
    })),
  );
}

/** Waits until a message with `text` (by `author`, when given) is shown. */
export function waitMessage(page, text, author) {
  return waitPage(
    page,
    `message ${JSON.stringify(text)}${author ? ` by ${author}` : ''}`,
    ({ text, author }) =>
      [...document.querySelectorAll('#messages .message')].some(
        (m) => m.querySelector('.text')?.textContent === text && (!author || m.querySelector('.author')?.textContent === author),
      ),
    { text, author },
  );
}

/** Waits until the presence list has `name` (marked "you" if `self`). */
export function waitPresence(page, name, self = false) {
  return waitPage(
    page,
    `${name}${self ? ' (you)' : ''} in the presence list`,
    ({ name, self }) =>
      [...document.querySelectorAll('#presence .member')].some(
        (li) =>
          li.querySelector('.member-name')?.textContent === name &&
          (!self || [...li.children].some((c) => c.textContent === 'you')),
      ),
    { name, self },
  );
}

/** Types a name and confirms it (Enter): the demo reconnects with it. */
export async function setName(page, name) {
  await page.fill('#name', name);
  await page.press('#name', 'Enter');
  await waitConnected(page);
  await waitPresence(page, name, true);
}

/** Types a room into the join form and presses Join. */
export async function joinRoom(page, room, name) {
  await page.fill('#room-input', room);
  await page.click('#join');
  await waitPage(page, `room title "# ${room}"`, (room) => document.getElementById('room-title').textContent === `# ${room}`, room);
  if (name) await waitPresence(page, name, true);
}

/** Types a message and presses Send; waits until the page shows it. */
export async function send(page, text, name) {
  await page.fill('#message-input', text);
  await page.click('#send');
  await waitMessage(page, text, name);
}

/** Records every state and text #status goes through, from now on, in window.__e2eStates. */
export function recordStatus(page) {
  return page.evaluate(() => {
    const status = document.getElementById('status');
    const now = () => `${status.dataset.state}: ${status.textContent}`;
    window.__e2eStates = [now()];
    new MutationObserver(() => {
      const states = window.__e2eStates;
      if (states[states.length - 1] !== now()) states.push(now());
    }).observe(status, { attributes: true, childList: true, characterData: true, subtree: true });
  });
}

/** Waits until #status has shown "reconnecting in N s" (since recordStatus). */
export function waitReconnecting(page) {
  return waitPage(page, 'status "reconnecting in N s"', () =>
    window.__e2eStates.some((s) => /^reconnecting: reconnecting in \d+ s$/.test(s)),
  );
}

/** Every WebSocket frame of a page, sent and received, parsed. */
export function recordFrames(page) {
  const frames = [];
  page.on('websocket', (ws) => {
    const socket = frames.filter((f) => f.dir === 'open').length;
    frames.push({ dir: 'open', socket, url: ws.url() });
    const add = (dir) => (f) => {
      try {
        frames.push({ dir, socket, msg: JSON.parse(f.payload) });
      } catch {
        /* not JSON */
      }
    };
    ws.on('framesent', add('sent'));
    ws.on('framereceived', add('received'));
    ws.on('close', () => frames.push({ dir: 'close', socket }));
  });
  return frames;
}
