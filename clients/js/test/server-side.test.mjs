// Against a real `ferrows serve`: server-side subscriptions (a token's
// `subs`, the server API's subscribe and unsubscribe), recovered across a
// dropped connection; credentials refreshed before they expire; keyed
// publications made once. In both encodings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { msgpack } from "../msgpack.js";
import { serverForFile, connected, nextEvent, hs256, uniqueChannel, withTimeout, apiPublish, API_KEY, Collector } from "./helpers.mjs";

const SECRET = "test-secret";
const file = serverForFile({ args: ["--token-hmac-secret", SECRET], clientOptions: { maxReconnectDelay: 200 } });
const now = () => Math.floor(Date.now() / 1000);
const text = new TextDecoder();

async function api(path, body) {
  const res = await fetch(`${file.server.http}${path}`, {
    method: "POST",
    headers: { Authorization: `apikey ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

for (const [name, codec] of [["json", undefined], ["msgpack", msgpack]]) {
  const options = codec ? { codec } : {};
  const value = (data) => (data instanceof Uint8Array ? JSON.parse(text.decode(data)) : data);

  test(`${name}: a token's server-side subscription arrives, recovers, and is refreshed`, async () => {
    const channel = uniqueChannel("news");
    const user = `u-${name}`;
    let issued = 0;
    // The tokens of the first two connections expire in 2 s; the refresh
    // gets one for an hour.
    const token = () => {
      issued += 1;
      return hs256(SECRET, { sub: user, subs: [channel], exp: issued <= 2 ? now() + 2 : now() + 3600 });
    };
    const client = file.client({ token, ...options });
    const got = new Collector();
    client.on("publication", (ch, pub) => { if (ch === channel) got.push(pub); });
    const first = nextEvent(client, "subscribed", (ch) => ch === channel);
    client.connect();
    await connected(client);
    const [, start] = await first;
    assert.equal(start.recovered, true);
    await apiPublish(file.server, channel, { n: 1 });
    await got.count(1, "the first publication");

    // Dropped while one is published: recovered on the reconnection.
    const again = nextEvent(client, "subscribed", (ch) => ch === channel);
    client._drop("test");
    await apiPublish(file.server, channel, { n: 2 });
    const [, recovery] = await again;
    assert.deepEqual({ recovered: recovery.recovered, missed: recovery.missed }, { recovered: true, missed: 1 });
    await got.count(2, "the missed publication");
    assert.deepEqual(got.items.map((p) => value(p.data).n), [1, 2]);

    // The connection's credentials were refreshed before their expiry: it
    // lives on (the server would close it with 4007).
    const id = client.clientId;
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(client.clientId, id, "the same connection");
    assert.equal(issued, 3, "a fresh token was fetched for the refresh");
    await client.ping();

    // The server API ends it; and a client's own subscription too.
    const own = uniqueChannel("room");
    const ended = new Promise((resolve) => client.subscribe(own, { onUnsubscribed: resolve }));
    await withTimeout(client.getSubscription(own).ready, "the own subscription");
    const gone = nextEvent(client, "unsubscribed", (ch) => ch === channel);
    await api("/api/unsubscribe", { user, channel });
    await api("/api/unsubscribe", { user, channel: own });
    await gone;
    await withTimeout(ended, "onUnsubscribed");
    assert.equal(client.getSubscription(own), undefined);

    // The server API subscribes it again.
    const back = nextEvent(client, "subscribed", (ch) => ch === channel);
    await api("/api/subscribe", { user, channel });
    await back;
  });

  test(`${name}: a publication with an idempotency key is made once`, async () => {
    const channel = uniqueChannel("room");
    const client = await file.connectedClient({ token: hs256(SECRET, { sub: "keyed" }), ...options });
    const first = await client.publish(channel, { n: 1 }, { idempotencyKey: `k-${name}` });
    const again = await client.publish(channel, { n: 1 }, { idempotencyKey: `k-${name}` });
    assert.deepEqual(again, first);
    const other = await client.publish(channel, { n: 2 });
    assert.equal(other.offset, first.offset + 1);
    await assert.rejects(client.publish(channel, 1, { idempotencyKey: "not a key" }), (e) => e.code === 107);
  });
}

test("sse: a stream ends at its token's expiry (4007) and the client comes back with a fresh token", async () => {
  let issued = 0;
  const token = () => {
    issued += 1;
    return hs256(SECRET, { sub: "streamer", exp: issued === 1 ? now() + 2 : now() + 3600 });
  };
  const client = file.client({ token, transport: "sse", EventSource });
  const expired = nextEvent(client, "state", (state, detail) => state === "disconnected" && detail.code === 4007);
  client.connect();
  await connected(client);
  await expired;
  await connected(client);
  assert.equal(issued, 2);
});
