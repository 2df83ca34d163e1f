// Against a real `ferrows serve --token-hmac-secret`: HS256 tokens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serverForFile, connected, nextEvent, hs256, uniqueChannel, withTimeout } from "./helpers.mjs";

const SECRET = "test-secret";
const file = serverForFile({ args: ["--token-hmac-secret", SECRET], clientOptions: { maxReconnectDelay: 200 } });
const newClient = file.client;

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

test("a valid token: the user is the token's subject, its name is shown", async () => {
  const client = newClient({ token: hs256(SECRET, { sub: "alice", name: "Alice A.", exp: inAnHour() }) });
  const info = nextEvent(client, "connected");
  client.connect();
  const [result] = await info;
  assert.equal(result.user, "alice");
  assert.equal(client.user, "alice");
  const channel = uniqueChannel();
  await withTimeout(client.subscribe(channel).ready, "subscription");
  const presence = await withTimeout(client.presence(channel), "presence");
  assert.equal(presence[client.clientId].user, "alice");
  assert.equal(presence[client.clientId].name, "Alice A.");
});

test("a token function is asked for a token", async () => {
  let calls = 0;
  const client = newClient({ token: async () => { calls += 1; return hs256(SECRET, { sub: "bob" }); } });
  client.connect();
  await connected(client);
  assert.equal(client.user, "bob");
  assert.equal(calls, 1);
});

for (const [what, token] of [
  ["a token signed with another secret", () => hs256("not-the-secret", { sub: "mallory" })],
  ["an expired token", () => hs256(SECRET, { sub: "alice", exp: Math.floor(Date.now() / 1000) - 60 })],
  ["a token that is not a JWT", () => "garbage"],
]) {
  test(`${what} stops the client with an error (no reconnection)`, async () => {
    const client = newClient({ token: token() });
    const errored = nextEvent(client, "error");
    client.connect();
    const [err] = await errored;
    assert.ok(err.code === 101 || err.closeCode === 4001, `code ${err.code}, close code ${err.closeCode}: ${err.message}`);
    assert.equal(client.state, "disconnected");
    assert.equal(client._timers.reconnect, null, "no reconnection scheduled");
  });
}
