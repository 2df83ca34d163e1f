// Against a real `ferrows serve`: reconnection with backoff and recovery of
// missed publications, after a dropped connection and after a restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "../ferrows.js";
import { startServer, apiPublish, Collector, connected, nextEvent, uniqueChannel, withTimeout } from "./helpers.mjs";

/** A WebSocket constructor whose connections fail (connection refused) while the gate is shut. */
function gatedWebSocket() {
  const gate = { open: true, attempts: 0 };
  gate.WebSocket = class extends globalThis.WebSocket {
    constructor(url, protocols) {
      gate.attempts += 1;
      super(gate.open ? url : "ws://127.0.0.1:1/ws", protocols);
    }
  };
  return gate;
}

test("a dropped connection recovers the missed publications in order, once", async (t) => {
  const server = await startServer();
  const gate = gatedWebSocket();
  // The WebSocket alone: `auto` would go on over long polling (which the
  // gate does not shut) while the WebSocket is refused.
  const client = new Client(server.ws, { WebSocket: gate.WebSocket, minReconnectDelay: 20, maxReconnectDelay: 200, transport: "websocket" });
  t.after(async () => { client.disconnect(); await server.stop(); });
  const channel = uniqueChannel();
  const pubs = new Collector();
  const recoveries = new Collector();
  const sub = client.subscribe(channel, { onPublication: pubs.push, onRecovery: recoveries.push });
  client.connect();
  await withTimeout(sub.ready, "the subscription");
  await apiPublish(server, channel, 0);
  await pubs.count(1, "the first publication");

  gate.open = false;
  const states = new Collector();
  client.on("state", (s, d) => states.push([s, d?.reconnect]));
  client._drop(); // as if the network failed
  for (let i = 1; i <= 3; i++) await apiPublish(server, channel, i);
  // Let at least two attempts fail, so backoff is exercised.
  await states.until((items) => items.filter(([s, r]) => s === "disconnected" && r).length >= 3, "two failed attempts");
  const recovered = nextEvent(client, "connected");
  gate.open = true;
  await recovered;
  await recoveries.count(1, "the recovery");
  assert.deepEqual(recoveries.items, [{ recovered: true, missed: 3 }]);
  await apiPublish(server, channel, 4);
  await pubs.count(5, "the live publication after recovery");
  assert.deepEqual(pubs.items.map((p) => p.data), [0, 1, 2, 3, 4]);
  const offsets = pubs.items.map((p) => p.offset);
  assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), "consecutive offsets");
  // Nothing more arrives: a ping's reply comes after any push already sent.
  await withTimeout(client.ping(), "ping");
  assert.equal(pubs.items.length, 5);
});

test("disconnect() and connect() recover, publications made in between arrive", async (t) => {
  const server = await startServer();
  const client = new Client(server.ws);
  t.after(async () => { client.disconnect(); await server.stop(); });
  const channel = uniqueChannel();
  const pubs = new Collector();
  const recoveries = new Collector();
  const sub = client.subscribe(channel, { onPublication: pubs.push, onRecovery: recoveries.push });
  client.connect();
  await withTimeout(sub.ready, "the subscription");
  client.disconnect();
  for (const text of ["a", "b"]) await apiPublish(server, channel, { text });
  client.connect();
  await recoveries.count(1, "the recovery");
  assert.deepEqual(recoveries.items, [{ recovered: true, missed: 2 }]);
  assert.deepEqual(pubs.items.map((p) => p.data.text), ["a", "b"]);
});

test("after a server restart: reconnect with backoff, recovered:false (new epoch)", async (t) => {
  let server = await startServer();
  const port = server.port;
  // The WebSocket alone: every failed attempt backs off (with `auto`, a
  // failed WebSocket is followed at once by the HTTP transports).
  const client = new Client(server.ws, { minReconnectDelay: 50, maxReconnectDelay: 400, transport: "websocket" });
  t.after(async () => { client.disconnect(); await server.stop(); });
  const channel = uniqueChannel();
  const pubs = new Collector();
  const recoveries = new Collector();
  const sub = client.subscribe(channel, { onPublication: pubs.push, onRecovery: recoveries.push });
  client.connect();
  await withTimeout(sub.ready, "the subscription");
  await apiPublish(server, channel, "before");
  await pubs.count(1, "the first publication");
  const epochBefore = sub.position.epoch;

  const drops = new Collector();
  client.on("state", (s, d) => { if (s === "disconnected") drops.push(d); });
  await server.stop("SIGTERM");
  await drops.count(3, "the close and two failed attempts");
  assert.equal(drops.items[0].reconnect, true);
  assert.ok([1001, 1006].includes(drops.items[0].code), `close code ${drops.items[0].code}`);
  assert.ok(drops.items.every((d) => d.reconnect && d.delay <= 400), JSON.stringify(drops.items));
  assert.deepEqual(drops.items.map((d) => d.attempt).slice(0, 3), [1, 2, 3]);

  server = await startServer({ port });
  assert.equal(server.port, port);
  await connected(client);
  await recoveries.count(1, "the recovery");
  assert.deepEqual(recoveries.items, [{ recovered: false, missed: 0 }]);
  assert.notEqual(sub.position.epoch, epochBefore);
  await apiPublish(server, channel, "after");
  await pubs.count(2, "the publication after the restart");
  assert.deepEqual(pubs.items.map((p) => p.data), ["before", "after"]);
});

test("a server shutting down closes with 1001 and the client reconnects", async (t) => {
  let server = await startServer();
  const port = server.port;
  const client = new Client(server.ws, { minReconnectDelay: 50, maxReconnectDelay: 200 });
  t.after(async () => { client.disconnect(); await server.stop(); });
  client.connect();
  await connected(client);
  const closed = nextEvent(client, "state", (s) => s === "disconnected", "the close");
  await server.stop("SIGTERM");
  const [, detail] = await closed;
  assert.equal(detail.code, 1001, `close code ${detail.code} ${detail.reason}`);
  assert.equal(detail.reconnect, true);
  server = await startServer({ port });
  await connected(client);
});

test("connections dropped while publications stream: every one arrives, in order, once", async (t) => {
  const N = 300;
  // A publication takes about 0.3 ms here, a reconnection with its random
  // delay 5-60 ms: the gap a recovery must fill depends on the machine's
  // load, up to all N. The history holds them all so that every recovery
  // succeeds however slow the reconnection (the default of 100 is the
  // window's own test, above); what is checked is exactly-once, in order.
  const dir = mkdtempSync(join(tmpdir(), "ferrows-recovery-"));
  const config = join(dir, "serve.toml");
  writeFileSync(config, `[namespaces.chat]\npublish = true\nhistory_size = ${N}\n`);
  const server = await startServer({ args: ["--config", config] });
  const reader = new Client(server.ws, { minReconnectDelay: 10, maxReconnectDelay: 50 });
  const writer = new Client(server.ws);
  t.after(async () => { reader.disconnect(); writer.disconnect(); await server.stop(); rmSync(dir, { recursive: true }); });
  const channel = uniqueChannel();
  const pubs = new Collector();
  const recoveries = [];
  const sub = reader.subscribe(channel, { onPublication: (p) => pubs.push(p.data), onRecovery: (r) => recoveries.push(r) });
  reader.connect();
  writer.connect();
  await withTimeout(sub.ready, "the subscription");
  await connected(writer);
  for (let i = 0; i < N; i++) {
    if (i === 50 || i === 120 || i === 200) reader._drop();
    if (i === 150) { reader.disconnect(); reader.connect(); } // a clean close too
    await withTimeout(writer.publish(channel, i), `publish ${i}`);
  }
  await pubs.count(N, `${N} publications`);
  await withTimeout(reader.ping(), "ping");
  assert.deepEqual(pubs.items, Array.from({ length: N }, (_, i) => i));
  assert.ok(recoveries.length >= 1, "at least one resubscription recovered");
  assert.ok(recoveries.every((r) => r.recovered), JSON.stringify(recoveries));
});
