// One API over every transport, against the real server: WebSocket,
// Server-Sent Events (with HTTP publishing) and long polling, each forced,
// deliver the same publications in order and recover across a dropped
// connection and a server restart; `auto` falls back by itself when a
// transport cannot open. (Through real proxies, in Chromium: e2e/.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { Client } from "../ferrows.js";
import { Collector, apiPublish, connected, hs256, startServer, uniqueChannel, withTimeout } from "./helpers.mjs";

const FORCED = ["websocket", "sse", "longpoll"];

/** A client of `transport` (Node has no EventSource of its own). */
function client(server, transport, options = {}) {
  return new Client(server.ws, { transport, EventSource, minReconnectDelay: 20, maxReconnectDelay: 200, timeout: 3000, ...options });
}

for (const transport of FORCED) {
  test(`${transport}: two channels, publications from the API and the client, in order, recovered after a drop`, async (t) => {
    const server = await startServer();
    const c = client(server, transport, { name: "al" });
    t.after(async () => { c.disconnect(); await server.stop(); });
    const [a, b] = [uniqueChannel(), uniqueChannel()];
    const got = { [a]: new Collector(), [b]: new Collector() };
    const recoveries = new Collector();
    const subs = [a, b].map((channel) => c.subscribe(channel, { onPublication: (p) => got[channel].push(p), onRecovery: recoveries.push }));
    const states = new Collector();
    c.on("state", (state, detail) => states.push([state, detail?.transport]));
    c.connect();
    await connected(c);
    assert.equal(c.transport, transport);
    assert.deepEqual(states.items.at(-1), ["connected", transport]);
    await withTimeout(Promise.all(subs.map((s) => s.ready)), "both subscriptions");
    await apiPublish(server, a, 1);
    const published = await c.publish(b, { from: "client" });
    assert.equal(typeof published.offset, "number");
    await apiPublish(server, a, 2);
    await got[a].count(2, `${transport}: a`);
    await got[b].count(1, `${transport}: b`);
    assert.deepEqual(got[a].items.map((p) => p.data), [1, 2]);
    assert.deepEqual(got[b].items[0].data, { from: "client" });
    assert.equal(got[b].items[0].info?.name, "al", "a publication over HTTP carries its name");

    // The client goes away; publications go on meanwhile.
    c.disconnect();
    for (const n of [3, 4, 5]) await apiPublish(server, a, n);
    c.connect();
    await connected(c);
    await got[a].count(5, `${transport}: the missed ones`);
    await apiPublish(server, a, 6);
    await got[a].count(6, `${transport}: live again`);
    assert.deepEqual(got[a].items.map((p) => p.data), [1, 2, 3, 4, 5, 6], "in order, once each");
    assert.ok(recoveries.items.every((r) => r.recovered), JSON.stringify(recoveries.items));
    const missed = recoveries.items.reduce((sum, r) => sum + r.missed, 0);
    assert.equal(missed, 3, JSON.stringify(recoveries.items));
  });

  test(`${transport}: after a server restart, the subscriptions hear that the stream restarted`, async (t) => {
    let server = await startServer();
    const port = server.port;
    const c = client(server, transport);
    t.after(async () => { c.disconnect(); await server.stop(); });
    const channel = uniqueChannel();
    const got = new Collector();
    const recoveries = new Collector();
    const sub = c.subscribe(channel, { onPublication: got.push, onRecovery: recoveries.push });
    c.connect();
    await withTimeout(sub.ready, "the subscription");
    await apiPublish(server, channel, "before");
    await got.count(1, "the first publication");
    await server.stop();
    server = await startServer({ port });
    await recoveries.count(1, `${transport}: the recovery`);
    assert.deepEqual(recoveries.items, [{ recovered: false, missed: 0 }]);
    await apiPublish(server, channel, "after");
    await got.count(2, `${transport}: the next publication`);
    assert.deepEqual(got.items.map((p) => p.data), ["before", "after"]);
  });
}

for (const transport of ["sse", "longpoll"]) {
  test(`${transport}: an invalid channel fails alone; presence and history over HTTP`, async (t) => {
    const secret = "s3cret";
    const server = await startServer({ args: ["--token-hmac-secret", secret, "--allow-anonymous", "false"] });
    const c = client(server, transport, { token: hs256(secret, { sub: "al" }) });
    t.after(async () => { c.disconnect(); await server.stop(); });
    const ok = uniqueChannel();
    const got = new Collector();
    c.subscribe(ok, { onPublication: got.push });
    c.connect();
    await connected(c);
    const errors = new Collector();
    c.subscribe("bad name", { onError: errors.push });
    await errors.count(1, "the bad channel's error");
    assert.equal(errors.items[0].code, 102);
    await assert.rejects(c.publish("$sys:stats", 1), (e) => e.code === 103);
    await apiPublish(server, ok, "still here");
    await got.count(1, "the good channel goes on");
    const { publications } = await c.history(ok, 5);
    assert.deepEqual(publications.map((p) => p.data), ["still here"]);
    // A stream's client is in presence (the stream it opened before the
    // last subscribe leaves it shortly); a long-polling one is not.
    const expected = transport === "sse" ? [c.clientId] : [];
    let present = {};
    for (let tries = 0; tries < 100; tries++) {
      present = await c.presence(ok);
      if (JSON.stringify(Object.keys(present)) === JSON.stringify(expected)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(Object.keys(present), expected);
    await assert.rejects(c.history("bad name"), (e) => e.code === 102);
    await c.ping();
  });
}

test("a refused token stops an HTTP transport's client with the server's error", async (t) => {
  const server = await startServer({ args: ["--token-hmac-secret", "s3cret", "--allow-anonymous", "false"] });
  const c = client(server, "sse", { token: "not.a.jwt" });
  t.after(async () => { c.disconnect(); await server.stop(); });
  c.subscribe(uniqueChannel());
  const errors = new Collector();
  c.on("error", errors.push);
  c.connect();
  await errors.count(1, "the error");
  assert.equal(errors.items[0].code, 101);
  assert.equal(c.state, "disconnected");
});

/** A WebSocket that never opens: what a proxy that strips `Upgrade` leaves. */
class RefusedWebSocket {
  constructor() {
    setTimeout(() => { this.onerror?.(); this.onclose?.({ code: 1006, reason: "" }); }, 5);
  }
  close() {}
}

/** An EventSource that stays silent: what a proxy that buffers responses leaves. */
class SilentEventSource {
  constructor() { this.readyState = 0; }
  addEventListener() {}
  close() {}
}

test("auto: falls back to Server-Sent Events when the WebSocket cannot open, then to long polling when the stream stays silent", async (t) => {
  const server = await startServer();
  const channel = uniqueChannel();
  const viaSse = new Client(server.ws, { WebSocket: RefusedWebSocket, EventSource, timeout: 1000, minReconnectDelay: 20 });
  const viaPoll = new Client(server.ws, { WebSocket: RefusedWebSocket, EventSource: SilentEventSource, timeout: 1000, minReconnectDelay: 20 });
  t.after(async () => { viaSse.disconnect(); viaPoll.disconnect(); await server.stop(); });
  const tried = { sse: new Collector(), poll: new Collector() };
  viaSse.on("state", (s, d) => tried.sse.push([s, d?.transport ?? d?.fallback]));
  viaPoll.on("state", (s, d) => tried.poll.push([s, d?.transport ?? d?.fallback]));
  const got = { sse: new Collector(), poll: new Collector() };
  viaSse.subscribe(channel, { onPublication: got.sse.push });
  viaPoll.subscribe(channel, { onPublication: got.poll.push });
  viaSse.connect();
  viaPoll.connect();
  await connected(viaSse);
  await connected(viaPoll);
  assert.equal(viaSse.transport, "sse");
  assert.equal(viaPoll.transport, "longpoll");
  assert.deepEqual(tried.sse.items, [["connecting", "websocket"], ["disconnected", "sse"], ["connecting", "sse"], ["connected", "sse"]]);
  assert.deepEqual(tried.poll.items.map(([s, how]) => `${s} ${how}`), [
    "connecting websocket", "disconnected sse", "connecting sse", "disconnected longpoll", "connecting longpoll", "connected longpoll",
  ]);
  await Promise.all([viaSse, viaPoll].map((c) => c.getSubscription(channel).ready));
  await apiPublish(server, channel, "hello");
  await got.sse.count(1, "over the stream");
  await got.poll.count(1, "over long polling");
});

test("auto: a server that is down is tried over each transport, then again after the backoff", async (t) => {
  const server = await startServer();
  const port = server.port;
  await server.stop();
  const c = new Client(`ws://127.0.0.1:${port}/ws`, { EventSource, timeout: 1000, minReconnectDelay: 20, maxReconnectDelay: 50 });
  t.after(() => c.disconnect());
  const states = new Collector();
  c.on("state", (s, d) => { if (s === "connecting") states.push(d.transport); });
  c.connect();
  await states.count(4, "two rounds");
  assert.deepEqual(states.items.slice(0, 4), ["websocket", "sse", "longpoll", "websocket"]);
});

test("longpoll: a client without subscriptions does not poll until it has one", async (t) => {
  const server = await startServer();
  const c = client(server, "longpoll");
  t.after(async () => { c.disconnect(); await server.stop(); });
  const polls = async () => {
    const text = await (await fetch(`${server.http}/metrics`)).text();
    return Number(/^ferrows_poll_requests_total (\d+)/m.exec(text)[1]);
  };
  c.connect();
  await connected(c);
  const before = await polls();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await polls(), before, "no poll while there is nothing to poll");
  const channel = uniqueChannel();
  const got = new Collector();
  await withTimeout(c.subscribe(channel, { onPublication: got.push }).ready, "the subscription");
  await apiPublish(server, channel, "now");
  await got.count(1, "the publication");
});

test("auto: back to a WebSocket once one opens again", async (t) => {
  const server = await startServer();
  const gate = { open: false };
  class GatedWebSocket extends globalThis.WebSocket {
    constructor(url, protocols) {
      super(gate.open ? url : "ws://127.0.0.1:1/ws", protocols);
    }
  }
  const c = new Client(server.ws, { WebSocket: GatedWebSocket, EventSource, timeout: 2000, minReconnectDelay: 20, upgradeInterval: 100 });
  t.after(async () => { c.disconnect(); await server.stop(); });
  const channel = uniqueChannel();
  const got = new Collector();
  c.subscribe(channel, { onPublication: got.push });
  c.connect();
  await connected(c);
  assert.equal(c.transport, "sse");
  await apiPublish(server, channel, 1);
  await got.count(1, "over the stream");
  const states = new Collector();
  c.on("state", (s, d) => states.push([s, d?.transport]));
  gate.open = true;
  await states.until((items) => items.some(([s, how]) => s === "connected" && how === "websocket"), "the move back");
  assert.equal(c.transport, "websocket");
  await apiPublish(server, channel, 2);
  await got.count(2, "over the WebSocket");
  assert.deepEqual(got.items.map((p) => p.data), [1, 2]);
});

test("sse: a subscription made while the stream opens is taken", async (t) => {
  const server = await startServer();
  const c = client(server, "sse");
  t.after(async () => { c.disconnect(); await server.stop(); });
  const [a, b] = [uniqueChannel(), uniqueChannel()];
  c.subscribe(a);
  c.connect();
  // The stream is opening: a second channel now.
  const late = c.subscribe(b, { onPublication: () => {} });
  await withTimeout(late.ready, "the subscription made while opening");
});

test("over the HTTP transports, more channels than a request may name fail as subscribes over the limit", async (t) => {
  const server = await startServer({ args: ["--max-request-channels", "2"] });
  const c = client(server, "longpoll");
  t.after(async () => { c.disconnect(); await server.stop(); });
  const [a, b, extra] = [uniqueChannel(), uniqueChannel(), uniqueChannel()];
  const got = new Collector();
  c.subscribe(a, { onPublication: got.push });
  c.subscribe(b);
  c.connect();
  await connected(c);
  await withTimeout(c.getSubscription(b).ready, "two subscriptions");
  const errors = new Collector();
  c.subscribe(extra, { onError: errors.push });
  await errors.count(1, "the third's error");
  assert.equal(errors.items[0].code, 106);
  await apiPublish(server, a, "still");
  await got.count(1, "the others go on");
});
