// Against a real `ferrows serve`: publish/subscribe between clients, the
// server API, errors, presence, history.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverForFile, apiPublish, Collector, connected, nextEvent, uniqueChannel, withTimeout } from "./helpers.mjs";

const file = serverForFile();
const newClient = file.connectedClient;

test("connect: the server names the client", async () => {
  const client = await newClient({ name: "alice" });
  assert.equal(typeof client.clientId, "string");
  assert.ok(client.clientId.length > 0);
  await withTimeout(client.ping(), "ping");
});

test("publish from one client reaches another, with info and positions", async () => {
  const channel = uniqueChannel();
  const alice = await newClient({ name: "alice" });
  const bob = await newClient({ name: "bob" });
  const got = new Collector();
  const sub = bob.subscribe(channel, { onPublication: got.push });
  const { position } = await withTimeout(sub.ready, "bob's subscription");
  assert.equal(typeof position.epoch, "string");
  const r1 = await withTimeout(alice.publish(channel, { text: "hi" }), "publish 1");
  const r2 = await withTimeout(alice.publish(channel, { text: "yo" }), "publish 2");
  assert.equal(r1.epoch, position.epoch);
  assert.equal(r1.offset, position.offset + 1);
  assert.equal(r2.offset, r1.offset + 1);
  await got.count(2, "two publications");
  assert.deepEqual(got.items.map((p) => p.data), [{ text: "hi" }, { text: "yo" }]);
  assert.deepEqual(got.items.map((p) => p.offset), [r1.offset, r2.offset]);
  assert.equal(got.items[0].info.client, alice.clientId);
  assert.equal(got.items[0].info.name, "alice");
  assert.deepEqual(sub.position, { offset: r2.offset, epoch: r2.epoch });
});

test("a subscriber receives its own publications too", async () => {
  const channel = uniqueChannel();
  const client = await newClient();
  const got = new Collector();
  await withTimeout(client.subscribe(channel, { onPublication: got.push }).ready, "subscription");
  await client.publish(channel, "me");
  await got.count(1, "own publication");
  assert.equal(got.items[0].data, "me");
});

test("POST /api/publish reaches subscribers", async () => {
  const channel = uniqueChannel();
  const client = await newClient();
  const got = new Collector();
  await withTimeout(client.subscribe(channel, { onPublication: got.push }).ready, "subscription");
  const answer = await apiPublish(file.server, channel, { n: 1, nested: [1, "two", null] });
  assert.equal(typeof answer.result.offset, "number");
  await got.count(1, "the API publication");
  assert.deepEqual(got.items[0].data, { n: 1, nested: [1, "two", null] });
  assert.equal(got.items[0].offset, answer.result.offset);
});

test("unsubscribe stops delivery", async () => {
  const channel = uniqueChannel();
  const client = await newClient();
  const got = new Collector();
  const sub = client.subscribe(channel, { onPublication: got.push });
  await withTimeout(sub.ready, "subscription");
  await sub.unsubscribe();
  assert.equal(client.getSubscription(channel), undefined);
  // A second subscription in the same channel on another client: once it has
  // the publication, the first client would have had it too.
  const other = await newClient();
  const seen = new Collector();
  await withTimeout(other.subscribe(channel, { onPublication: seen.push }).ready, "other subscription");
  await apiPublish(file.server, channel, "after");
  await seen.count(1, "publication on the other client");
  await withTimeout(client.ping(), "ping after the publication"); // the push would have come before this reply
  assert.deepEqual(got.items, []);
});

test("errors: invalid channel names are rejected with code 102", async () => {
  const client = await newClient();
  const errors = new Collector();
  const sub = client.subscribe("bad channel!", { onError: errors.push });
  await assert.rejects(withTimeout(sub.ready, "subscribe error"), (err) => err.code === 102);
  assert.equal(errors.items.length, 1);
  assert.equal(sub.state, "unsubscribed");
  assert.equal(client.getSubscription("bad channel!"), undefined);
  await assert.rejects(withTimeout(client.publish("", 1), "publish error"), (err) => err.code === 102);
  await assert.rejects(withTimeout(client.publish("x".repeat(256), 1), "publish error"), (err) => err.code === 102);
  assert.equal(client.state, "connected", "errors leave the connection up");
});

test("errors: subscribing twice to a channel", async () => {
  const channel = uniqueChannel();
  const client = await newClient();
  await withTimeout(client.subscribe(channel).ready, "subscription");
  assert.throws(() => client.subscribe(channel), (err) => err.code === 105);
});

test("presence lists the subscribed clients; join and leave are pushed", async () => {
  const channel = uniqueChannel();
  const alice = await newClient({ name: "alice" });
  const bob = await newClient({ name: "bob" });
  const joins = new Collector();
  const leaves = new Collector();
  await withTimeout(alice.subscribe(channel, { onJoin: joins.push, onLeave: leaves.push }).ready, "alice's subscription");
  const bobSub = bob.subscribe(channel);
  await withTimeout(bobSub.ready, "bob's subscription");
  const clients = await withTimeout(alice.presence(channel), "presence");
  assert.deepEqual(Object.keys(clients).sort(), [alice.clientId, bob.clientId].sort());
  assert.equal(clients[alice.clientId].name, "alice");
  assert.equal(clients[bob.clientId].name, "bob");
  await joins.until((items) => items.some((j) => j.client === bob.clientId), "bob's join");
  await bobSub.unsubscribe();
  await leaves.until((items) => items.some((l) => l.client === bob.clientId), "bob's leave");
  const after = await withTimeout(alice.presence(channel), "presence after leave");
  assert.deepEqual(Object.keys(after), [alice.clientId]);
});

test("presence drops a client that disconnects", async () => {
  const channel = uniqueChannel();
  const alice = await newClient({ name: "alice" });
  const bob = await newClient({ name: "bob" });
  const leaves = new Collector();
  await withTimeout(alice.subscribe(channel, { onLeave: leaves.push }).ready, "alice's subscription");
  await withTimeout(bob.subscribe(channel).ready, "bob's subscription");
  const bobId = bob.clientId;
  bob.disconnect();
  await leaves.until((items) => items.some((l) => l.client === bobId), "bob's leave");
  const clients = await withTimeout(alice.presence(channel), "presence");
  assert.deepEqual(Object.keys(clients), [alice.clientId]);
});

test("history returns the latest publications, oldest first", async () => {
  const channel = uniqueChannel();
  const client = await newClient();
  for (let i = 1; i <= 5; i++) await client.publish(channel, { i });
  const all = await withTimeout(client.history(channel), "history");
  assert.deepEqual(all.publications.map((p) => p.data.i), [1, 2, 3, 4, 5]);
  const last = await withTimeout(client.history(channel, 2), "history limit 2");
  assert.deepEqual(last.publications.map((p) => p.data.i), [4, 5]);
  assert.equal(last.position.offset, all.publications[4].offset);
});

test("server stats are published into $sys:stats every second", async () => {
  const client = await newClient();
  const got = new Collector();
  client.subscribe("$sys:stats", { onPublication: got.push });
  await got.count(1, "a stats publication", 5000);
  const stats = got.items[0].data;
  for (const key of ["clients", "messages_per_sec", "subscriptions"]) assert.equal(typeof stats[key], "number", key);
  assert.ok(stats.clients >= 1);
});

test("disconnect() rejects commands in flight and later ones; connect() again works", async () => {
  const client = await newClient();
  const pending = client.history(uniqueChannel());
  client.disconnect();
  await assert.rejects(pending, (err) => err.code === "disconnected");
  await assert.rejects(client.ping(), (err) => err.code === "disconnected");
  const reconnected = nextEvent(client, "connected");
  client.connect();
  await reconnected;
});
