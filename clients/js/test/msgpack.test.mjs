// The MessagePack encoding (msgpack.js) against a real `ferrows serve`:
// the same protocol as JSON, and what crosses between the two encodings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { msgpack, encode, decode } from "../msgpack.js";
import { serverForFile, apiPublish, Collector, uniqueChannel, withTimeout } from "./helpers.mjs";

const file = serverForFile();
const newClient = file.connectedClient;

const text = new TextDecoder();

test("codec: values round-trip, and hostile input is refused", () => {
  const values = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
    0.5, -1.25, 1e300, "", "é", "x".repeat(31), "x".repeat(32), "y".repeat(300), "z".repeat(70000),
    new Uint8Array([0, 255, 1]), new Uint8Array(300), new Uint8Array(70000),
    [], [1, [2, [3]]], Array.from({ length: 20 }, (_, i) => i), {}, { a: 1, b: { c: [null, "d"] } },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
  ];
  for (const value of values) assert.deepEqual(decode(encode(value)), value);
  assert.equal(decode(encode(2n ** 63n)), 2n ** 63n);
  assert.throws(() => decode(new Uint8Array([0x92, 0x01])), /truncated/);
  assert.throws(() => decode(new Uint8Array([0x01, 0x02])), /after the value/);
  assert.throws(() => decode(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), /truncated/, "a length beyond the input");
  assert.throws(() => decode(new Uint8Array(100).fill(0x91)), /too deep/);
  assert.throws(() => decode(new Uint8Array([0xa1, 0xff])), "invalid UTF-8");
  const polluted = decode(encode({ ["__proto__"]: { admin: true } }));
  assert.equal({}.admin, undefined);
  assert.equal(Object.getPrototypeOf(polluted), Object.prototype);
});

test("msgpack: publish, subscribe, presence and history as with JSON", async () => {
  const channel = uniqueChannel();
  const alice = await newClient({ name: "alice", codec: msgpack });
  const bob = await newClient({ name: "bob", codec: msgpack });
  const got = new Collector();
  const sub = bob.subscribe(channel, { onPublication: got.push });
  const { position } = await withTimeout(sub.ready, "subscription");
  const bytes = new Uint8Array([0, 1, 2, 253, 254, 255]);
  const r1 = await withTimeout(alice.publish(channel, bytes), "publish bytes");
  const r2 = await withTimeout(alice.publish(channel, { text: "hi" }), "publish a value");
  assert.equal(r1.offset, position.offset + 1);
  await got.count(2, "two publications");
  assert.deepEqual(got.items[0].data, bytes);
  assert.deepEqual(JSON.parse(text.decode(got.items[1].data)), { text: "hi" });
  assert.equal(got.items[0].info.name, "alice");
  assert.deepEqual(got.items.map((p) => p.offset), [r1.offset, r2.offset]);
  const history = await withTimeout(alice.history(channel, 10), "history");
  assert.deepEqual(history.publications.map((p) => p.offset), [r1.offset, r2.offset]);
  assert.deepEqual(history.publications[0].data, bytes);
  await assert.rejects(alice.publish("bad channel", bytes), (e) => e.code === 102);
  // Other byte views go as bytes; undefined is refused before it is sent.
  await withTimeout(alice.publish(channel, bytes.buffer), "publish an ArrayBuffer");
  await got.count(3, "three publications");
  assert.deepEqual(got.items[2].data, bytes);
  assert.throws(() => msgpack.encode({ id: 1, publish: { channel, data: undefined } }), TypeError);
});

test("msgpack: presence, join and leave carry the clients' info as maps", async () => {
  const channel = uniqueChannel();
  const alice = await newClient({ name: "alice", codec: msgpack });
  const bob = await newClient({ name: "bob", codec: msgpack });
  const joins = new Collector();
  const leaves = new Collector();
  await withTimeout(alice.subscribe(channel, { onJoin: joins.push, onLeave: leaves.push }).ready, "alice");
  const bobSub = bob.subscribe(channel);
  await withTimeout(bobSub.ready, "bob");
  const clients = await withTimeout(alice.presence(channel), "presence");
  assert.deepEqual(Object.keys(clients).sort(), [alice.clientId, bob.clientId].sort());
  assert.equal(clients[bob.clientId].name, "bob");
  await joins.until((items) => items.some((j) => j.client === bob.clientId && j.name === "bob"), "bob's join");
  await bobSub.unsubscribe();
  await leaves.until((items) => items.some((l) => l.client === bob.clientId), "bob's leave");
});

test("across encodings: bytes that are not JSON reach JSON clients intact, JSON reaches MessagePack as its text", async () => {
  const channel = uniqueChannel();
  const binary = await newClient({ codec: msgpack });
  const plain = await newClient();
  const toPlain = new Collector();
  const toBinary = new Collector();
  await withTimeout(plain.subscribe(channel, { onPublication: toPlain.push }).ready, "JSON subscription");
  await withTimeout(binary.subscribe(channel, { onPublication: toBinary.push }).ready, "msgpack subscription");
  const bytes = new Uint8Array([0xff, 0x00, 0x7b]);
  await binary.publish(channel, bytes);
  await binary.publish(channel, new TextEncoder().encode('{"a":1}'));
  await plain.publish(channel, { b: 2 });
  await apiPublish(file.server, channel, [3]);
  await toPlain.count(4, "JSON client: four publications");
  await toBinary.count(4, "msgpack client: four publications");
  assert.deepEqual(toPlain.items[0].data, bytes, "not JSON: given as bytes (data_base64 on the wire)");
  assert.deepEqual(toPlain.items[1].data, { a: 1 }, "bytes that are JSON text: that value");
  assert.deepEqual(toPlain.items[2].data, { b: 2 });
  assert.deepEqual(toPlain.items[3].data, [3]);
  assert.deepEqual(toBinary.items[0].data, bytes);
  assert.deepEqual(JSON.parse(text.decode(toBinary.items[2].data)), { b: 2 });
  assert.deepEqual(JSON.parse(text.decode(toBinary.items[3].data)), [3]);
  const history = await withTimeout(plain.history(channel), "JSON history");
  assert.deepEqual(history.publications[0].data, bytes);
});
