// End-to-end tests of the `ferrows serve` browser demo (crates/ferrows-server/demo)
// in Debian's headless Chromium. Run by e2e/run.sh.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  Browser,
  FerrowsNode,
  ROOT,
  WAIT,
  bounded,
  joinRoom,
  messages,
  openDemo,
  recordFrames,
  recordStatus,
  send,
  setName,
  startRedis,
  started,
  waitConnected,
  waitMessage,
  waitPage,
  waitPresence,
  waitReconnecting,
  waitTransport,
} from './lib.mjs';
import { startProxy } from './proxy.mjs';

const SCREENSHOTS = process.env.E2E_SCREENSHOTS ?? path.join(ROOT, 'docs');
// Each test's waits are bounded by WAIT; this bounds a whole test.
const TEST_TIMEOUT = 12 * WAIT;

let chromium;
before(async () => {
  chromium = await new Browser().start();
});
after(async () => {
  await chromium?.close();
});

const unique = (prefix) => `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;

/** Runs a scenario; on failure, adds the tail of every process it started;
 * in any case, kills them and closes its pages. */
async function scenario(body) {
  started.length = 0;
  const cleanup = [];
  const pages = [];
  const page = async (label, size) => {
    const p = await chromium.newPage(size);
    p.label = label;
    pages.push(p);
    return p;
  };
  try {
    await body({ page, cleanup });
    for (const p of pages) assert.deepEqual(p.errors, [], `${p.label}: errors in the page`);
  } catch (e) {
    const logs = started.map((p) => `--- ${p.name} (last lines) ---\n${p.tail()}`).join('\n');
    e.message += `\n${logs}`;
    throw e;
  } finally {
    for (const p of pages) await bounded('close a page', p.context().close()).catch(() => {});
    for (const fn of cleanup.reverse()) await fn().catch(() => {});
  }
}

/** Starts a node and registers its end. */
async function node(cleanup, name, args) {
  const n = new FerrowsNode(name, args);
  cleanup.push(() => n.kill());
  return n.start();
}

test('two pages chat in one room: message with its author, presence, client counter', { timeout: TEST_TIMEOUT }, () =>
  scenario(async ({ page, cleanup }) => {
    const server = await node(cleanup, 'ferrows');
    const a = await page('page A');
    const b = await page('page B');
    await openDemo(a, server.url, 'page A');
    await openDemo(b, server.url, 'page B');
    await setName(a, 'alice');
    await setName(b, 'bob');
    const room = unique('room');
    await joinRoom(a, room, 'alice');
    await joinRoom(b, room, 'bob');

    const text = `hello from alice ${Date.now()}`;
    await send(a, text, 'alice');
    await waitMessage(b, text, 'alice');
    const shown = (await messages(b)).filter((m) => m.text === text);
    assert.equal(shown.length, 1, `page B shows the message once: ${JSON.stringify(shown)}`);
    assert.equal(shown[0].author, 'alice');

    await waitPresence(b, 'alice');
    await waitPresence(a, 'bob');
    await waitPage(b, 'presence count 2', () => document.getElementById('presence-count').textContent === '2');
    for (const p of [a, b]) {
      await waitPage(p, 'client counter >= 2', () => Number(document.getElementById('clients-count').textContent.replace(/[^\d.]/g, '') || NaN) >= 2);
      await waitPage(p, 'message rate shown', () => /^\d/.test(document.getElementById('rate').textContent));
    }
  }));

test('redis broker: a page recovers the messages it missed while its node restarted', { timeout: TEST_TIMEOUT }, () =>
  scenario(async ({ page, cleanup }) => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const args = ['--broker', 'redis', '--redis-url', redis.url, '--api-key', 'k'];
    const node1 = await node(cleanup, 'ferrows node 1', args);
    const node2 = await node(cleanup, 'ferrows node 2', args);
    const room = unique('r');
    const channel = `chat:${room}`;

    const a = await page('page A (node 1)');
    const frames = recordFrames(a);
    await openDemo(a, node1.url, 'page A (node 1)');
    await setName(a, 'alice');
    await joinRoom(a, room, 'alice');
    const b = await page('page B (node 2)');
    await openDemo(b, node2.url, 'page B (node 2)');
    await setName(b, 'bob');
    await joinRoom(b, room, 'bob');
    await waitPresence(a, 'bob');

    await send(a, 'before the restart', 'alice');
    await waitMessage(b, 'before the restart', 'alice'); // across nodes, through Redis
    // The element shown now: still there after recovery, replaced if the list were reloaded.
    await a.evaluate(() => {
      window.__e2eFirst = [...document.querySelectorAll('#messages .message')].at(-1);
    });
    await recordStatus(a);

    const socketsBefore = frames.filter((f) => f.dir === 'open').length;
    const exit = await node1.stop('SIGTERM');
    assert.equal(exit.code, 0, `node 1 exit after SIGTERM: ${JSON.stringify(exit)}`);
    await waitReconnecting(a);

    const missed = [1, 2, 3].map((i) => `missed ${i} while node 1 was down`);
    let last = 0;
    for (const text of missed) {
      const { offset } = await node2.publish(channel, { text, name: 'backend', ts: Date.now() });
      assert.ok(offset > last, `offsets grow: ${offset} after ${last}`);
      last = offset;
    }
    for (const text of missed) await waitMessage(b, text, 'backend');

    await node1.start(); // same port
    await waitConnected(a);
    for (const text of missed) await waitMessage(a, text, 'backend');
    // Anything sent before this message arrives before it on the same connection.
    await send(a, 'after the restart', 'alice');
    await waitMessage(b, 'after the restart', 'alice');

    const shown = (await messages(a)).map((m) => `${m.author}: ${m.text}`);
    assert.deepEqual(
      shown,
      ['alice: before the restart', ...missed.map((t) => `backend: ${t}`), 'alice: after the restart'],
      'page A shows every message once, in order',
    );
    const onNode2 = (await messages(b)).map((m) => `${m.author}: ${m.text}`);
    assert.deepEqual(onNode2, shown, 'page B (node 2) shows the same messages');
    assert.ok(await a.evaluate(() => window.__e2eFirst.isConnected), 'the list was recovered, not reloaded');

    // The resubscription asked for what it missed and got exactly that.
    const since = frames.find((f) => f.dir === 'sent' && f.socket >= socketsBefore && f.msg.subscribe?.channel === channel);
    assert.ok(since?.msg.subscribe.since, `resubscription with since: ${JSON.stringify(since?.msg)}`);
    const reply = frames.find((f) => f.dir === 'received' && f.socket === since.socket && f.msg.id === since.msg.id);
    assert.equal(reply?.msg.result?.recovered, true, `subscribe reply: ${JSON.stringify(reply?.msg)}`);
    assert.deepEqual(reply.msg.result.publications.map((p) => p.data.text), missed);
  }));

test('memory broker: after a restart the page reconnects, drops the lost history and keeps working', { timeout: TEST_TIMEOUT }, () =>
  scenario(async ({ page, cleanup }) => {
    const server = await node(cleanup, 'ferrows', ['--api-key', 'k']);
    const room = unique('m');
    const a = await page('page A');
    await openDemo(a, server.url, 'page A');
    await setName(a, 'alice');
    await joinRoom(a, room, 'alice');
    await send(a, 'before the restart', 'alice');
    await a.evaluate(() => {
      window.__e2eFirst = [...document.querySelectorAll('#messages .message')].at(-1);
    });
    await recordStatus(a);

    const exit = await server.stop('SIGTERM');
    assert.equal(exit.code, 0, `exit after SIGTERM: ${JSON.stringify(exit)}`);
    await waitReconnecting(a);
    await server.start(); // same port, empty history, new epoch
    await waitConnected(a);
    await waitPresence(a, 'alice', true);
    // The history is gone: the demo clears the list rather than show stale positions.
    await waitPage(a, 'the old list is dropped', () => !window.__e2eFirst.isConnected);
    await send(a, 'after the restart', 'alice');
    await server.publish(`chat:${room}`, { text: 'from the backend', name: 'backend' });
    await waitMessage(a, 'from the backend', 'backend');
    const shown = (await messages(a)).map((m) => `${m.author}: ${m.text}`);
    assert.deepEqual(shown, ['alice: after the restart', 'backend: from the backend']);
  }));

/** Names a page's user without waiting for presence (a long-polling
 * client is not in presence). */
async function rename(p, name) {
  await p.fill('#name', name);
  await p.press('#name', 'Enter');
  await waitConnected(p);
}

for (const [transport, label] of [['websocket', 'WebSocket'], ['sse', 'Server-Sent Events'], ['longpoll', 'long polling']]) {
  test(`forced ${label}: two pages chat, a third loads the history, the status names the transport`, { timeout: TEST_TIMEOUT }, () =>
    scenario(async ({ page, cleanup }) => {
      const server = await node(cleanup, 'ferrows', ['--api-key', 'k']);
      const room = unique(transport);
      const query = `?transport=${transport}#${room}`;
      const a = await page(`page A (${transport})`);
      const frames = recordFrames(a);
      const b = await page(`page B (${transport})`);
      await openDemo(a, server.url, a.label, query);
      await openDemo(b, server.url, b.label, query);
      for (const p of [a, b]) await waitTransport(p, transport);
      assert.equal(await a.inputValue('#transport'), transport, 'the transport menu shows the forced one');
      await rename(a, 'alice');
      await rename(b, 'bob');
      await send(a, `hello over ${label}`, 'alice');
      await waitMessage(b, `hello over ${label}`, 'alice');
      await send(b, 'and back', 'bob');
      await waitMessage(a, 'and back', 'bob');
      await server.publish(`chat:${room}`, { text: 'from the backend', name: 'backend' });
      for (const p of [a, b]) await waitMessage(p, 'from the backend', 'backend');
      if (transport !== 'longpoll') {
        await waitPresence(a, 'bob');
        await waitPresence(b, 'alice');
      }
      // A page that comes later loads what was said (history, over its transport).
      const c = await page(`page C (${transport})`);
      await openDemo(c, server.url, c.label, query);
      await waitTransport(c, transport);
      for (const [text, author] of [[`hello over ${label}`, 'alice'], ['and back', 'bob'], ['from the backend', 'backend']]) {
        await waitMessage(c, text, author);
      }
      const shown = (await messages(c)).map((m) => `${m.author}: ${m.text}`);
      assert.deepEqual(shown, [`alice: hello over ${label}`, 'bob: and back', 'backend: from the backend']);
      const sockets = frames.filter((f) => f.dir === 'open').length;
      assert.equal(sockets > 0, transport === 'websocket', `WebSockets opened by page A: ${sockets}`);
    }));
}

for (const [mode, transport, label] of [['strip-upgrade', 'sse', 'Server-Sent Events'], ['buffer', 'longpoll', 'long polling']]) {
  test(`auto: through a proxy that ${mode === 'buffer' ? 'buffers responses' : 'strips Upgrade'}, the page falls back to ${label}`, { timeout: TEST_TIMEOUT }, () =>
    scenario(async ({ page, cleanup }) => {
      const server = await node(cleanup, 'ferrows', ['--api-key', 'k']);
      const proxy = await startProxy(server.url, mode);
      cleanup.push(() => proxy.close());
      const room = unique(mode);
      const a = await page(`page A (through the ${mode} proxy)`);
      await a.goto(`${proxy.url}/#${room}`, { timeout: WAIT });
      await recordStatus(a);
      // Each transport that stays silent costs the client's timeout (10 s).
      await waitTransport(a, transport, 3 * WAIT);
      const tried = await a.evaluate(() => window.__e2eStates);
      if (mode === 'buffer') {
        // The stream stayed silent for the client's timeout: the next transport.
        assert.ok(tried.includes('connecting: trying long polling…'), JSON.stringify(tried));
      }
      const b = await page('page B (direct)');
      await openDemo(b, server.url, b.label, `#${room}`);
      await waitTransport(b, 'websocket');
      await rename(a, 'alice');
      await rename(b, 'bob');
      await send(a, `through the ${mode} proxy`, 'alice');
      await waitMessage(b, `through the ${mode} proxy`, 'alice');
      await send(b, 'and back', 'bob');
      await waitMessage(a, 'and back', 'bob');
    }));
}

test('screenshots: docs/demo-chat.png and docs/demo-two-pages.png', { timeout: TEST_TIMEOUT }, () =>
  scenario(async ({ page, cleanup }) => {
    const server = await node(cleanup, 'ferrows', ['--api-key', 'k']);
    const room = 'rust';
    const users = [
      ['alice', await page('alice')],
      ['bob', await page('bob')],
      ['carol', await page('carol')],
    ];
    for (const [name, p] of users) {
      await openDemo(p, server.url, name);
      await setName(p, name);
      await joinRoom(p, room, name);
    }
    const [[, a], [, b], [, c]] = users;
    for (const [name] of users) await waitPresence(a, name);
    const script = [
      [a, 'alice', 'Hi! Anyone tried the new ferrows serve?'],
      [b, 'bob', 'Yes: two tabs, one room, messages arrive instantly.'],
      [c, 'carol', 'Presence on the left, live server stats on top.'],
      [null, 'deploy-bot', 'v0.1 is deployed to the staging cluster'],
      [a, 'alice', 'And if a node restarts, clients recover what they missed.'],
    ];
    for (const [p, name, text] of script) {
      if (p) await send(p, text, name);
      else await server.publish(`chat:${room}`, { text, name });
      for (const [, q] of users) await waitMessage(q, text, name);
    }
    for (const [, p] of users) {
      await waitPage(p, 'client counter 3', () => document.getElementById('clients-count').textContent === '3');
      await p.locator('#message-input').blur();
    }
    await b.fill('#message-input', 'Nice!');

    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    const chatPng = path.join(SCREENSHOTS, 'demo-chat.png');
    await a.screenshot({ path: chatPng });

    // The two pages side by side, composed by the browser itself.
    const size = { width: 900, height: 640 };
    const shots = [];
    for (const p of [a, b]) {
      await p.setViewportSize(size);
      await p.locator('#message-input').blur();
      shots.push((await p.screenshot()).toString('base64'));
    }
    const compose = await page('compose', { width: 2 * size.width + 72, height: size.height + 48 });
    await compose.setContent(`<!doctype html>
      <style>
        html, body { margin: 0; background: #dfe3ea; }
        body { display: flex; gap: 24px; padding: 24px; }
        img { width: ${size.width}px; height: ${size.height}px; border-radius: 8px;
              box-shadow: 0 2px 10px rgb(0 0 0 / 0.18); }
      </style>
      <img src="data:image/png;base64,${shots[0]}"><img src="data:image/png;base64,${shots[1]}">`);
    await waitPage(compose, 'images loaded', () => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
    const twoPng = path.join(SCREENSHOTS, 'demo-two-pages.png');
    await compose.screenshot({ path: twoPng });

    for (const file of [chatPng, twoPng]) {
      const { size: bytes } = fs.statSync(file);
      assert.ok(bytes > 10_000 && bytes < 400_000, `${file}: ${bytes} bytes`);
    }
  }));
