// The browser demo served by `ferrows serve`, in Debian's headless Chromium
// (started by tools/test-support/chromium.mjs, driven by this package's
// devDependency playwright-core). Without Chromium or playwright-core the
// tests fail and say what to install: scripts/install-deps.sh (run by
// scripts/test.sh) installs both.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium } from "../../../tools/test-support/chromium.mjs";
import { startServer, apiPublish, WAIT_MS } from "./helpers.mjs";

let server;
let chrome;
let browser;

before(async () => {
  chrome = await launchChromium({
    from: import.meta.url,
    install: "run scripts/install-deps.sh as root (or: apt-get install chromium; npm ci in clients/js)",
    wait: WAIT_MS,
  });
  browser = chrome.browser;
  server = await startServer();
});
after(async () => {
  await chrome?.close();
  await server?.stop();
});

/** Opens the demo; resolves once it says "connected". Page errors fail the test. */
async function openDemo(t, hash = "") {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  t.after(() => assert.deepEqual(errors, [], "no errors in the page"));
  await page.goto(`${server.http}/${hash}`);
  await waitConnected(page);
  return page;
}

// "connected · WebSocket": the status names the transport.
const waitConnected = (page) => page.waitForFunction(() => document.querySelector("#status").textContent.trim().startsWith("connected"));
const hasMessage = (page, text) =>
  page.waitForFunction((t) => [...document.querySelectorAll("#messages .message")].some((m) => m.textContent.includes(t)), text);

test("chat between two pages: messages, presence, stats, rooms, history", async (t) => {
  const a = await openDemo(t);
  const b = await openDemo(t);
  await a.fill("#name", "alice");
  await a.press("#name", "Enter"); // reconnects with the new name
  await waitConnected(a);
  await a.waitForFunction(() => document.querySelector("#presence").textContent.includes("alice"));
  await b.waitForFunction(() => document.querySelector("#presence").textContent.includes("alice"));
  assert.match(await b.textContent("#presence"), /guest-\d{4}/);

  const text = `hello ${process.pid}`;
  await a.fill("#message-input", text);
  await a.click("#send");
  await hasMessage(b, text);
  await hasMessage(a, text);
  assert.match(await b.textContent("#messages .message"), /alice/);

  // The server API publishes into the same room.
  await apiPublish(server, "chat:lobby", { text: "from the backend" });
  await hasMessage(b, "from the backend");

  // $sys:stats
  await b.waitForFunction(() => Number(document.querySelector("#clients-count").textContent) >= 2);
  assert.match(await b.textContent("#rate"), /^\d/);

  // Another room: joined from the text box, presence follows.
  await b.fill("#room-input", "side-room");
  await b.click("#join");
  await b.waitForFunction(() => document.querySelector("#room-title").textContent.includes("side-room"));
  await a.waitForFunction(() => !document.querySelector("#presence").textContent.includes("guest-"));
  await b.fill("#message-input", "in the side room");
  await b.press("#message-input", "Enter");
  await hasMessage(b, "in the side room");

  // A newcomer gets the history of the room.
  const c = await openDemo(t, "#lobby");
  await hasMessage(c, text);
  await hasMessage(c, "from the backend");
  assert.equal(await c.$$eval("#messages .message", (m) => m.length), 2);
});

test("the status shows the reconnection; the page works again after a restart", async (t) => {
  const page = await openDemo(t, "#restart-room");
  const port = server.port;
  await server.stop();
  await page.waitForFunction(() => /reconnecting in \d+ s/.test(document.querySelector("#status").textContent));
  server = await startServer({ port });
  await page.waitForFunction(() => document.querySelector("#status").textContent.trim().startsWith("connected"), null, { timeout: 20000 });
  await page.fill("#message-input", "after the restart");
  await page.click("#send");
  await hasMessage(page, "after the restart");
});
