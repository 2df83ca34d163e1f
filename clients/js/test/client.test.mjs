// Client behaviours against a scripted fake server: timeouts, close codes,
// backoff, recovery bookkeeping (order, no duplicates), queued commands.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "../ferrows.js";
import { startFakeServer, scripted } from "./fake-server.mjs";
import { Collector, nextEvent, connected, withTimeout } from "./helpers.mjs";

const fast = { minReconnectDelay: 20, maxReconnectDelay: 200 };

test("a command without a reply rejects with code timeout", async (t) => {
  const server = await startFakeServer(scripted(() => {}));
  const client = new Client(server.ws, { ...fast, timeout: 300 });
  t.after(() => { client.disconnect(); return server.close(); });
  client.connect();
  await connected(client);
  const err = await withTimeout(client.publish("a", 1).then(() => null, (e) => e), "the publish to fail");
  assert.equal(err?.code, "timeout");
});

test("commands made while connecting are sent once connected", async (t) => {
  const seen = [];
  const server = await startFakeServer(scripted((conn, cmd) => {
    seen.push(Object.keys(cmd).find((k) => k !== "id"));
    conn.send({ id: cmd.id, result: cmd.publish ? { offset: 1, epoch: "e" } : {} });
  }));
  const client = new Client(server.ws, fast);
  t.after(() => { client.disconnect(); return server.close(); });
  client.connect();
  const result = await withTimeout(client.publish("a", { x: 1 }), "the publish reply");
  assert.deepEqual(result, { offset: 1, epoch: "e" });
  assert.deepEqual(seen, ["publish"]);
});

test("commands before connect() and after disconnect() reject at once", async () => {
  const client = new Client("ws://127.0.0.1:1/ws");
  await assert.rejects(client.publish("a", 1), { code: "disconnected" });
});

test("an unanswered connect times out and the client tries again", async (t) => {
  const connections = [];
  const server = await startFakeServer((conn) => { connections.push(conn); });
  const client = new Client(server.ws, { ...fast, timeout: 200 });
  t.after(() => { client.disconnect(); return server.close(); });
  const states = new Collector();
  client.on("state", (s, d) => states.push([s, d?.reconnect]));
  client.connect();
  await states.until((items) => items.filter(([s]) => s === "connecting").length >= 2, "a second attempt");
  assert.deepEqual(states.items[1], ["disconnected", true]);
});

for (const code of [1009, 4000, 4001]) {
  test(`close ${code} stops the client with an error`, async (t) => {
    const connections = [];
    const server = await startFakeServer(scripted(() => {}, connections));
    const client = new Client(server.ws, fast);
    t.after(() => { client.disconnect(); return server.close(); });
    const errored = nextEvent(client, "error");
    client.connect();
    await connected(client);
    connections[0].close(code, "go away");
    const [err] = await errored;
    assert.equal(err.code, "closed");
    assert.equal(err.closeCode, code);
    assert.equal(client.state, "disconnected");
    assert.equal(client._timers.reconnect, null, "no reconnection scheduled");
    assert.equal(connections.length, 1);
  });
}

test("a rejected connect stops the client with the server's error", async (t) => {
  const server = await startFakeServer((conn) => {
    conn.onCommand = (cmd) => conn.send({ id: cmd.id, error: { code: 101, message: "unauthorized" } });
  });
  const client = new Client(server.ws, { ...fast, token: "bad" });
  t.after(() => { client.disconnect(); return server.close(); });
  const errored = nextEvent(client, "error");
  client.connect();
  const [err] = await errored;
  assert.equal(err.code, 101);
  assert.equal(client.state, "disconnected");
});

test("backoff: full jitter under an exponential cap", async (t) => {
  // The server accepts the WebSocket and closes it at once: no attempt succeeds.
  const server = await startFakeServer((conn) => conn.close(1011));
  // The WebSocket alone (`auto` would try the HTTP transports in between).
  const client = new Client(server.ws, { minReconnectDelay: 10, maxReconnectDelay: 40, transport: "websocket" });
  t.after(() => { client.disconnect(); return server.close(); });
  const delays = new Collector();
  client.on("state", (s, d) => { if (s === "disconnected" && d?.reconnect) delays.push([d.attempt, d.delay]); });
  client.connect();
  await delays.count(6, "six reconnection delays");
  for (const [attempt, delay] of delays.items) {
    assert.ok(delay >= 0 && delay <= Math.min(40, 10 * 2 ** (attempt - 1)), `attempt ${attempt}: delay ${delay}`);
  }
  assert.deepEqual(delays.items.slice(0, 6).map(([a]) => a), [1, 2, 3, 4, 5, 6]);
});

test("the token function is called before every attempt", async (t) => {
  const tokens = [];
  const connections = [];
  const server = await startFakeServer((conn) => {
    connections.push(conn);
    conn.onCommand = (cmd) => {
      tokens.push(cmd.connect.token);
      conn.send({ id: cmd.id, result: { client: "c", user: "u", ping: 0 } });
    };
  });
  let n = 0;
  const client = new Client(server.ws, { ...fast, token: async () => `token-${++n}` });
  t.after(() => { client.disconnect(); return server.close(); });
  client.connect();
  await connected(client);
  const again = nextEvent(client, "connected");
  connections[0].close(4004);
  await again;
  assert.deepEqual(tokens, ["token-1", "token-2"]);
});

for (const code of [4004, 1001, 1006]) {
  test(`after close ${code}: resubscribe since the last position, missed publications in order, once`, async (t) => {
    const connections = [];
    const subscribes = [];
    const server = await startFakeServer(scripted((conn, cmd) => {
      if (!cmd.subscribe) return;
      subscribes.push(cmd.subscribe);
      if (!cmd.subscribe.since) {
        conn.send({ id: cmd.id, result: { position: { offset: 2, epoch: "E" } } });
        conn.send({ push: { channel: "c", pub: { offset: 3, data: "three" } } });
        conn.send({ push: { channel: "c", pub: { offset: 3, data: "three again" } } }); // a duplicate
        conn.send({ push: { channel: "c", pub: { offset: 4, data: "four" } } });
      } else {
        // A live publication overtakes the reply; the reply repeats an old one.
        conn.send({ push: { channel: "c", pub: { offset: 7, data: "seven" } } });
        conn.send({ id: cmd.id, result: {
          position: { offset: 6, epoch: "E" }, recovered: true,
          publications: [{ offset: 4, data: "four" }, { offset: 5, data: "five" }, { offset: 6, data: "six" }],
        } });
        conn.send({ push: { channel: "c", pub: { offset: 8, data: "eight" } } });
      }
    }, connections));
    const client = new Client(server.ws, fast);
    t.after(() => { client.disconnect(); return server.close(); });
    const pubs = new Collector();
    const recoveries = new Collector();
    client.subscribe("c", { onPublication: (p) => pubs.push(p.data), onRecovery: recoveries.push });
    client.connect();
    await pubs.count(2, "the live publications");
    if (code === 1006) client._drop();
    else connections[0].close(code);
    await pubs.count(6, "recovered and live publications");
    assert.deepEqual(pubs.items, ["three", "four", "five", "six", "seven", "eight"]);
    assert.deepEqual(subscribes[1], { channel: "c", since: { offset: 4, epoch: "E" } });
    assert.deepEqual(recoveries.items, [{ recovered: true, missed: 2 }]);
    assert.deepEqual(client.getSubscription("c").position, { offset: 8, epoch: "E" });
  });
}

test("recovered:false is reported and the new position adopted", async (t) => {
  const connections = [];
  const server = await startFakeServer(scripted((conn, cmd) => {
    if (!cmd.subscribe) return;
    const epoch = cmd.subscribe.since ? "F" : "E";
    conn.send({ id: cmd.id, result: cmd.subscribe.since
      ? { position: { offset: 1, epoch }, recovered: false, publications: [] }
      : { position: { offset: 10, epoch } } });
    conn.send({ push: { channel: "c", pub: { offset: cmd.subscribe.since ? 2 : 11, data: epoch } } });
  }, connections));
  const client = new Client(server.ws, fast);
  t.after(() => { client.disconnect(); return server.close(); });
  const pubs = new Collector();
  const recoveries = new Collector();
  client.subscribe("c", { onPublication: (p) => pubs.push(p.data), onRecovery: recoveries.push });
  client.connect();
  await pubs.count(1, "the first publication");
  connections[0].close(1001);
  await pubs.count(2, "the publication after the restart");
  assert.deepEqual(pubs.items, ["E", "F"]);
  assert.deepEqual(recoveries.items, [{ recovered: false, missed: 0 }]);
  assert.deepEqual(client.getSubscription("c").position, { offset: 2, epoch: "F" });
});

test("a reset push adopts the new position and reports the loss, without reconnecting", async (t) => {
  const connections = [];
  const server = await startFakeServer(scripted((conn, cmd) => {
    if (!cmd.subscribe) return;
    conn.send({ id: cmd.id, result: { position: { offset: 10, epoch: "E" } } });
    conn.send({ push: { channel: "c", pub: { offset: 11, data: "before" } } });
    // The server's broker lost its history: the stream goes on in epoch F.
    conn.send({ push: { channel: "c", reset: { position: { offset: 0, epoch: "F" } } } });
    conn.send({ push: { channel: "c", pub: { offset: 1, data: "after" } } });
  }, connections));
  const client = new Client(server.ws, fast);
  t.after(() => { client.disconnect(); return server.close(); });
  const pubs = new Collector();
  const recoveries = new Collector();
  client.subscribe("c", { onPublication: (p) => pubs.push(p.data), onRecovery: recoveries.push });
  client.connect();
  await pubs.count(2, "both publications");
  assert.deepEqual(pubs.items, ["before", "after"], "offset 1 of the new epoch is not taken for a duplicate");
  assert.deepEqual(recoveries.items, [{ recovered: false, missed: 0 }]);
  assert.deepEqual(client.getSubscription("c").position, { offset: 1, epoch: "F" });
  assert.equal(connections.length, 1, "no reconnect");
});

test("disconnect() then connect() recovers the subscriptions", async (t) => {
  const subscribes = [];
  const server = await startFakeServer(scripted((conn, cmd) => {
    if (!cmd.subscribe) return;
    subscribes.push(cmd.subscribe);
    conn.send({ id: cmd.id, result: { position: { offset: 5, epoch: "E" }, recovered: true, publications: [] } });
  }));
  const client = new Client(server.ws, fast);
  t.after(() => { client.disconnect(); return server.close(); });
  const sub = client.subscribe("c");
  client.connect();
  await withTimeout(sub.ready, "the subscription");
  client.disconnect();
  assert.equal(client.state, "disconnected");
  const again = nextEvent(client, "connected");
  client.connect();
  await again;
  await withTimeout(new Promise((resolve) => { sub._handlers.onSubscribed = resolve; }), "the resubscription");
  assert.deepEqual(subscribes, [{ channel: "c" }, { channel: "c", since: { offset: 5, epoch: "E" } }]);
});

test("a subscribe that fails with 100 is retried; other errors end the subscription", async (t) => {
  let attempts = 0;
  const server = await startFakeServer(scripted((conn, cmd) => {
    if (!cmd.subscribe) return;
    if (cmd.subscribe.channel === "bad") conn.send({ id: cmd.id, error: { code: 103, message: "permission denied" } });
    else if (++attempts < 3) conn.send({ id: cmd.id, error: { code: 100, message: "broker down" } });
    else conn.send({ id: cmd.id, result: { position: { offset: 0, epoch: "E" } } });
  }));
  const client = new Client(server.ws, fast);
  t.after(() => { client.disconnect(); return server.close(); });
  client.connect();
  const good = client.subscribe("good");
  const bad = client.subscribe("bad");
  await withTimeout(good.ready, "the subscription after two failures");
  assert.equal(attempts, 3);
  await assert.rejects(bad.ready, { code: 103 });
  assert.equal(bad.state, "unsubscribed");
  assert.equal(client.getSubscription("bad"), undefined);
  assert.equal(client.getSubscription("good"), good);
});
