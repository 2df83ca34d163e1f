// Against a real `ferrows serve`: the limits, and what the client does when
// the server enforces them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../ferrows.js";
import { startServer, Collector, connected, nextEvent, uniqueChannel, withTimeout } from "./helpers.mjs";

async function serverAndClient(t, args, options = {}) {
  const server = await startServer({ args });
  const client = new Client(server.ws, { minReconnectDelay: 20, maxReconnectDelay: 200, ...options });
  t.after(async () => { client.disconnect(); await server.stop(); });
  return { server, client };
}

test("a message over --max-message-size: close 1009, the client stops with an error", async (t) => {
  const { client } = await serverAndClient(t, ["--max-message-size", "4096"]);
  client.connect();
  await connected(client);
  const errored = nextEvent(client, "error");
  const publish = client.publish(uniqueChannel(), "x".repeat(5000));
  const [err] = await errored;
  assert.equal(err.closeCode, 1009);
  await assert.rejects(publish, (e) => e.code === "disconnected");
  assert.equal(client.state, "disconnected");
  assert.equal(client._timers.reconnect, null, "no reconnection scheduled");
});

test("--max-subscriptions: the next subscribe is rejected with 106", async (t) => {
  const { client } = await serverAndClient(t, ["--max-subscriptions", "2"]);
  client.connect();
  const subs = [uniqueChannel(), uniqueChannel(), uniqueChannel()].map((c) => client.subscribe(c));
  await withTimeout(Promise.all([subs[0].ready, subs[1].ready]), "two subscriptions");
  await assert.rejects(withTimeout(subs[2].ready, "the third subscribe"), (e) => e.code === 106);
  assert.equal(client.state, "connected");
});

test("--max-connections: a client over the limit retries until there is room", async (t) => {
  const { server, client: first } = await serverAndClient(t, ["--max-connections", "1"]);
  first.connect();
  await connected(first);
  const second = new Client(server.ws, { minReconnectDelay: 20, maxReconnectDelay: 100 });
  t.after(() => second.disconnect());
  const refusals = new Collector();
  second.on("state", (s, d) => { if (s === "disconnected") refusals.push(d); });
  second.connect();
  await refusals.count(2, "two refused attempts");
  assert.ok(refusals.items.every((d) => d.reconnect), JSON.stringify(refusals.items));
  const code = refusals.items[0].code;
  // docs/protocol.md says 4006; a server that refuses the handshake (HTTP 503) shows as 1006.
  assert.ok(code === 4006 || code === 1006, `close code ${code}`);
  first.disconnect();
  await connected(second);
});

test("--connect-timeout does not trouble a client that connects at once; app-level pings keep it up", async (t) => {
  const { client } = await serverAndClient(t, ["--connect-timeout", "1", "--ping-interval", "1"]);
  const info = nextEvent(client, "connected");
  client.connect();
  const [result] = await info;
  assert.equal(result.ping, 1);
  // Two ping intervals: the client's `ping` commands get their replies.
  const pings = new Collector();
  const send = client._ws.send.bind(client._ws);
  client._ws.send = (text) => { if (text.includes('"ping"')) pings.push(text); send(text); };
  await pings.count(2, "two app-level pings", 5000);
  await withTimeout(client.ping(), "a ping");
  assert.equal(client.state, "connected");
});
