// The example backend (examples/backend/backend.mjs) in the loop of a real
// `ferrows serve` configured by examples/backend/serve.toml: the moderated
// chat of the README, through the JavaScript client, in both encodings
// (connect data and the connect proxy, server-side subscriptions, the
// subscribe and publish proxies, RPC, a ban through the server API).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";
import { Client } from "../ferrows.js";
import { msgpack } from "../msgpack.js";
import { startServer, repoRoot, API_KEY, Collector, nextEvent, connected, withTimeout } from "./helpers.mjs";

const text = new TextDecoder();
const stops = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});

/** A free port on the loopback (bound, then let go). */
async function freePort() {
  const listener = createServer();
  await new Promise((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const { port } = listener.address();
  await new Promise((resolve) => listener.close(resolve));
  return port;
}

/** The example backend and a server that uses it. */
async function chat() {
  const port = await freePort();
  const url = (route) => `http://127.0.0.1:${port}/${route}`;
  const server = await startServer({
    args: [
      "--config", path.join(repoRoot, "examples/backend/serve.toml"),
      "--proxy-connect-url", url("connect"), "--proxy-refresh-url", url("refresh"),
      "--proxy-subscribe-url", url("subscribe"), "--proxy-publish-url", url("publish"),
      "--proxy-rpc-url", url("rpc"),
    ],
  });
  stops.push(() => server.stop());
  const env = { ...process.env, PORT: String(port), FERROWS_API: server.http, FERROWS_API_KEY: API_KEY, PROXY_SECRET: "change-me-too" };
  const backend = spawn(process.execPath, [path.join(repoRoot, "examples/backend/backend.mjs")], { env, stdio: ["ignore", "pipe", "inherit"] });
  stops.push(() => { backend.kill(); });
  await withTimeout(new Promise((resolve, reject) => {
    backend.stdout.setEncoding("utf8").on("data", (chunk) => { if (chunk.includes("backend listening")) resolve(); });
    backend.once("exit", (code) => reject(new Error(`the backend exited (${code})`)));
  }), "the backend to listen");
  return server;
}

for (const [name, codec] of [["json", undefined], ["msgpack", msgpack]]) {
  const decoded = (data) => (data instanceof Uint8Array ? JSON.parse(text.decode(data)) : data);

  test(`${name}: the moderated chat of the example backend`, async () => {
    const server = await chat();
    const clients = [];
    const client = (user, password, options = {}) => {
      const c = new Client(server.ws, { ...(codec ? { codec } : {}), data: { user, password }, minReconnectDelay: 50, maxReconnectDelay: 200, ...options });
      clients.push(c);
      return c;
    };
    try {
      // A wrong password: the backend refuses, the client stops.
      const intruder = client("alice", "guess");
      const refused = nextEvent(intruder, "error");
      intruder.connect();
      const [err] = await refused;
      assert.equal(err.code, 1401, err.message);

      // Alice logs in: the backend's user, data, and her notification
      // channel as a server-side subscription.
      const alice = client("alice", "alice-pw");
      const hello = nextEvent(alice, "connected");
      const notified = nextEvent(alice, "subscribed", (channel) => channel === "notify:alice");
      alice.connect();
      const [result] = await hello;
      assert.equal(result.user, "alice");
      assert.deepEqual(decoded(result.data), { moderator: false, rooms: ["room:lobby"] });
      await notified;

      // Rooms: the lobby is open, the moderators' room is not.
      const lobby = new Collector();
      await withTimeout(alice.subscribe("room:lobby", { onPublication: lobby.push }).ready, "the lobby");
      const mods = alice.subscribe("room:mods");
      await assert.rejects(withTimeout(mods.ready, "refusal"), (e) => e.code === 1403);

      // Bob is mentioned: his notification comes over his server-side
      // subscription; the message reaches the lobby stamped by the backend.
      const bob = client("bob", "bob-pw");
      const mentions = new Collector();
      bob.on("publication", (channel, pub) => { if (channel === "notify:bob") mentions.push(pub); });
      const bobSubscribed = nextEvent(bob, "subscribed", (channel) => channel === "notify:bob");
      bob.connect();
      await connected(bob);
      await bobSubscribed;
      await withTimeout(alice.publish("room:lobby", { text: "  hi @bob  " }), "publish");
      const [message] = await lobby.count(1, "the message");
      const stamped = decoded(message.data);
      assert.equal(stamped.text, "hi @bob");
      assert.equal(stamped.user, "alice");
      assert.ok(!Number.isNaN(Date.parse(stamped.at)));
      const [mention] = await mentions.count(1, "the mention");
      assert.equal(decoded(mention.data).mention.text, "hi @bob");

      // Moderation: refused with the backend's error.
      await assert.rejects(alice.publish("room:lobby", { text: "buy spam" }), (e) => e.code === 1400);

      // RPC.
      assert.deepEqual(decoded(await alice.rpc("whoami")), { user: "alice", name: "Alice", moderator: false });
      const kept = decoded(await alice.rpc("room.recent", { room: "room:lobby" }));
      assert.deepEqual(kept.map((m) => m.text), ["hi @bob"]);
      await assert.rejects(alice.rpc("user.ban", { user: "bob" }), (e) => e.code === 1403);

      // A moderator bans Bob: the backend disconnects him through the
      // server API (4501), and refuses his next connect.
      const mia = client("mia", "mia-pw");
      mia.connect();
      await connected(mia);
      const closed = nextEvent(bob, "state", (state, detail) => state === "disconnected" && detail.code === 4501);
      assert.deepEqual(decoded(await mia.rpc("user.ban", { user: "bob" })), { done: true });
      await closed;
    } finally {
      for (const c of clients) c.disconnect();
    }
  });
}
