// Failures while publications flow, against real `ferrows serve` nodes on a
// real redis-server: a node killed (SIGKILL), a node drained (SIGTERM),
// Redis restarted with and without persistence. Each test publishes a
// numbered stream into one channel and checks what every subscriber got:
// every publication acknowledged to the publisher, exactly once and in
// order; unacknowledged ones are counted (they may or may not arrive).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { Client } from "../ferrows.js";
import { RedisServer, connected, startServer, withTimeout, WAIT_MS } from "./helpers.mjs";

/** Publications per second, and the history the namespace keeps: 10 s of them. */
const RATE = 100;
const HISTORY = 1000;
/** Every subscriber must be back within this of the failure. */
const BACK_WITHIN_MS = 10000;

/** A configuration file: the `feed` namespace keeps HISTORY publications. */
function configFile() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ferrows-failover-"));
  const file = path.join(dir, "serve.toml");
  writeFileSync(file, `[namespaces.feed]\nhistory_size = ${HISTORY}\nhistory_ttl = 600\n`);
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function startNodes(redis, count, config, extra = []) {
  const nodes = [];
  for (let i = 0; i < count; i++) {
    const args = ["--broker", "redis", "--redis-url", redis.url, "--config", config.file, "--shutdown-timeout", "5", ...extra];
    nodes.push(await startServer({ args }));
  }
  return nodes;
}

/** The node list rotated by `i`: clients spread over the nodes. */
const rotated = (urls, i) => urls.map((_, k) => urls[(i + k) % urls.length]);

/** A subscriber of `channel` on a client over `urls`: what it got, and when it was back. */
function subscriber(urls, channel) {
  const client = new Client(urls, { minReconnectDelay: 100 });
  const got = [];
  const s = { client, got, urlsSeen: new Set(), recoveries: [], connectedAt: [] };
  client.on("state", (state) => {
    if (state === "connected") {
      s.urlsSeen.add(client.url);
      s.connectedAt.push(Date.now());
    }
  });
  s.sub = client.subscribe(channel, {
    onPublication: (p) => got.push(p.data.seq),
    onRecovery: (r) => s.recoveries.push(r),
  });
  client.connect();
  return s;
}

/**
 * Publishes `{seq}` into `channel` RATE times a second until `stop()`:
 * `acked` holds the sequence numbers the server acknowledged, `failed`
 * those whose publish failed (the connection was lost, the broker was down).
 */
function publisher(urls, channel) {
  const client = new Client(urls, { minReconnectDelay: 100, timeout: 5000 });
  client.connect();
  const p = { client, acked: [], failed: [], seq: 0, pending: new Set() };
  p.timer = setInterval(() => {
    if (client.state !== "connected") return;
    const seq = ++p.seq;
    const done = client.publish(channel, { seq }).then(
      () => p.acked.push(seq),
      () => p.failed.push(seq),
    );
    p.pending.add(done);
    done.finally(() => p.pending.delete(done));
  }, 1000 / RATE);
  p.stop = async () => {
    clearInterval(p.timer);
    await withTimeout(Promise.allSettled([...p.pending]), "the last publications to settle");
    p.acked.sort((a, b) => a - b);
    client.disconnect();
  };
  return p;
}

/** Waits until every subscriber has every acknowledged publication, then checks order and duplicates. */
async function checkDelivery(subscribers, pub, what) {
  await withTimeout(
    (async () => {
      while (!subscribers.every((s) => { const got = new Set(s.got); return pub.acked.every((seq) => got.has(seq)); })) {
        await new Promise((r) => setTimeout(r, 50));
      }
    })(),
    `${what}: every acknowledged publication at every subscriber`,
    WAIT_MS,
  ).catch((e) => {
    const short = subscribers.map((s) => pub.acked.filter((seq) => !s.got.includes(seq)).length);
    throw new Error(`${e.message}; missing per subscriber: ${short.join(",")}`);
  });
  const unacked = new Set(pub.failed);
  let unackedDelivered = 0;
  for (const [i, s] of subscribers.entries()) {
    for (let k = 1; k < s.got.length; k++) {
      assert.ok(s.got[k] > s.got[k - 1], `${what}: subscriber ${i} got ${s.got[k]} after ${s.got[k - 1]} (${s.got.slice(Math.max(0, k - 5), k + 5)})`);
    }
    const got = new Set(s.got);
    const missing = pub.acked.filter((seq) => !got.has(seq));
    assert.deepEqual(missing, [], `${what}: subscriber ${i} misses acknowledged publications`);
    unackedDelivered += s.got.filter((seq) => unacked.has(seq)).length;
  }
  return { acked: pub.acked.length, unacked: pub.failed.length, unackedDeliveredPerSubscriber: unackedDelivered / subscribers.length };
}

/** Resolves once every client of `moved` is connected and subscribed again, on another server than `gone`. */
function backElsewhere(moved, gone, what) {
  return withTimeout(
    (async () => {
      while (!moved.every((s) => s.client.state === "connected" && s.client.url !== gone && s.sub.state === "subscribed")) {
        await new Promise((r) => setTimeout(r, 20));
      }
    })(),
    what,
    BACK_WITHIN_MS,
  );
}

test("a node killed with SIGKILL while publications flow: every client is back within 10 s and gets every acknowledged publication once, in order", async () => {
  const redis = await new RedisServer().start();
  const config = configFile();
  const nodes = await startNodes(redis, 3, config);
  const urls = nodes.map((n) => n.ws);
  const channel = "feed:kill";
  const subscribers = [];
  try {
    for (let i = 0; i < 30; i++) subscribers.push(subscriber(rotated(urls, i), channel));
    await Promise.all(subscribers.map((s) => connected(s.client)));
    await Promise.all(subscribers.map((s) => s.sub.ready));
    // The publisher starts on the node that will die.
    const pub = publisher(urls, channel);
    await connected(pub.client);
    await new Promise((r) => setTimeout(r, 1500));
    const onVictim = subscribers.filter((s) => s.client.url === urls[0]);
    assert.ok(onVictim.length >= 5, `${onVictim.length} subscribers on the node to kill`);
    const killedAt = Date.now();
    await nodes[0].stop("SIGKILL");
    // Every client of the dead node is connected again, elsewhere.
    await backElsewhere(onVictim, urls[0], "the dead node's clients to be back elsewhere");
    const backMs = Date.now() - killedAt;
    await new Promise((r) => setTimeout(r, 1500));
    await pub.stop();
    const summary = await checkDelivery(subscribers, pub, "node killed");
    for (const s of subscribers) assert.ok(s.recoveries.every((r) => r.recovered), "every resubscription recovered");
    console.log(`node killed: ${onVictim.length} of ${subscribers.length} subscribers moved, all back in ${backMs} ms; ` +
      `${summary.acked} publications acknowledged (all delivered once, in order), ${summary.unacked} not acknowledged ` +
      `(${summary.unackedDeliveredPerSubscriber} of them delivered) at ${RATE}/s`);
  } finally {
    for (const s of subscribers) s.client.disconnect();
    for (const node of nodes) await node.stop("SIGKILL");
    await redis.stop();
    config.remove();
  }
});

test("a client given several servers skips one that is down, and one it cannot even open", async () => {
  const redis = await new RedisServer().start();
  const config = configFile();
  const [live] = await startNodes(redis, 1, config);
  const dead = await startNodes(redis, 1, config);
  const deadUrl = dead[0].ws;
  await dead[0].stop("SIGKILL");
  const client = new Client([deadUrl, live.ws], { minReconnectDelay: 50 });
  // A malformed URL is skipped too (and for good).
  const withBad = new Client(["not a url", deadUrl, live.ws], { minReconnectDelay: 50 });
  try {
    client.connect();
    await connected(client);
    assert.equal(client.url, live.ws);
    withBad.connect();
    await connected(withBad);
    assert.equal(withBad.url, live.ws);
  } finally {
    client.disconnect();
    withBad.disconnect();
    await live.stop("SIGKILL");
    await redis.stop();
    config.remove();
  }
});

/**
 * Three nodes, 30 subscribers spread over them, a publisher on the first;
 * `failure` runs 1.5 s into the stream, publishing goes on 1.5 s after it;
 * then `check` looks at what the subscribers got (before anything stops).
 */
async function streamThrough(failure, check, { appendonly = false, replica = false, nodeArgs = [] } = {}) {
  const redis = await new RedisServer({ appendonly }).start();
  // A replica of it, and nodes that know both.
  const second = replica ? await new RedisServer({ replicaOf: redis }).start() : null;
  const service = { url: second ? `${redis.url},${second.url}` : redis.url };
  const config = configFile();
  const nodes = await startNodes(service, 3, config, nodeArgs);
  const urls = nodes.map((n) => n.ws);
  const subscribers = [];
  try {
    for (let i = 0; i < 30; i++) subscribers.push(subscriber(rotated(urls, i), "feed:stream"));
    await Promise.all(subscribers.map((s) => connected(s.client)));
    await Promise.all(subscribers.map((s) => s.sub.ready));
    const pub = publisher(urls, "feed:stream");
    await connected(pub.client);
    await new Promise((r) => setTimeout(r, 1500));
    const detail = await failure({ redis, replica: second, nodes, urls, subscribers, pub });
    await new Promise((r) => setTimeout(r, 1500));
    await pub.stop();
    await check({ subscribers, pub, detail });
  } finally {
    for (const s of subscribers) s.client.disconnect();
    for (const node of nodes) await node.stop("SIGKILL");
    await redis.stop();
    await second?.stop();
    config.remove();
  }
}

/** Kills Redis and starts it again on its port and files after `downMs`. */
async function restartRedis(redis, downMs) {
  await redis.kill();
  await new Promise((r) => setTimeout(r, downMs));
  await redis.start();
}

test("Redis restarted with append-only persistence: every acknowledged publication reaches every subscriber once, in order", async () => {
  await streamThrough(async ({ redis }) => restartRedis(redis, 500), async ({ subscribers, pub }) => {
    const summary = await checkDelivery(subscribers, pub, "Redis restarted (appendonly)");
    for (const s of subscribers) assert.ok(s.recoveries.every((r) => r.recovered), "no reset: the history survived");
    assert.ok(summary.unacked > 0, "publications failed while Redis was down");
    console.log(`Redis restarted with appendonly (500 ms down): ${summary.acked} acknowledged, all delivered once and in order; ` +
      `${summary.unacked} refused while it was down (error 100), ${summary.unackedDeliveredPerSubscriber} of them delivered`);
  }, { appendonly: true });
});

test("Redis restarted without persistence: every subscriber gets the reset, and what was lost is counted", async () => {
  await streamThrough(async ({ redis }) => restartRedis(redis, 500), async ({ subscribers, pub }) => {
    await withTimeout(
      (async () => {
        while (!subscribers.every((s) => s.recoveries.some((r) => !r.recovered))) await new Promise((r) => setTimeout(r, 20));
      })(),
      "the reset at every subscriber",
    );
    // Nothing repeated, nothing out of order within an epoch: the numbers
    // still only grow.
    let lost = 0;
    for (const [i, s] of subscribers.entries()) {
      for (let k = 1; k < s.got.length; k++) assert.ok(s.got[k] > s.got[k - 1], `subscriber ${i}: ${s.got[k]} after ${s.got[k - 1]}`);
      assert.equal(s.recoveries.filter((r) => !r.recovered).length, 1, `subscriber ${i}: one reset`);
      const got = new Set(s.got);
      lost += pub.acked.filter((seq) => !got.has(seq)).length;
    }
    console.log(`Redis restarted without persistence (500 ms down): ${pub.acked.length} acknowledged, ` +
      `${pub.failed.length} refused while it was down; every subscriber got one reset; acknowledged but not delivered: ` +
      `${lost / subscribers.length} per subscriber (published in the new epoch before the subscriber's node had subscribed again)`);
  });
});

test("a node drained with SIGTERM while publications flow: its clients move and recover, the others miss nothing", async () => {
  let moved = 0;
  await streamThrough(async ({ nodes, urls, subscribers: subs }) => {
    const onNode = subs.filter((s) => s.client.url === urls[0]);
    moved = onNode.length;
    const started = Date.now();
    await nodes[0].stop("SIGTERM");
    await backElsewhere(onNode, urls[0], "the drained node's clients to be back elsewhere");
    return { drainedAndBackMs: Date.now() - started };
  }, async ({ subscribers, pub, detail }) => {
    const summary = await checkDelivery(subscribers, pub, "node drained");
    for (const s of subscribers) assert.ok(s.recoveries.every((r) => r.recovered), "every resubscription recovered");
    console.log(`node drained (SIGTERM): ${moved} subscribers moved, drained and back in ${detail.drainedAndBackMs} ms; ` +
      `${summary.acked} acknowledged, all delivered once and in order; ${summary.unacked} not acknowledged`);
  });
});

/**
 * The primary killed, the replica promoted 300 ms later (what Sentinel or
 * an operator does); resolves with the time from the kill to the first
 * publication acknowledged again.
 */
async function failOver({ redis, replica, pub }, { reattach = false, promoteFirst = false } = {}) {
  if (promoteFirst) {
    // The replica is promoted while the primary still takes publications:
    // its last 300 ms never reach the new primary.
    await replica.cli("REPLICAOF", "NO", "ONE");
    await new Promise((r) => setTimeout(r, 300));
  }
  const killedAt = Date.now();
  const ackedBefore = pub.acked.length;
  await redis.kill();
  await new Promise((r) => setTimeout(r, 300));
  if (!promoteFirst) await replica.cli("REPLICAOF", "NO", "ONE");
  if (reattach) {
    // The old primary comes back as a replica of the new one.
    redis.replicaOf = replica;
    await redis.start();
  }
  await withTimeout(
    (async () => { while (pub.acked.length === ackedBefore || pub.acked.length < ackedBefore + 5) await new Promise((r) => setTimeout(r, 10)); })(),
    "publications acknowledged again after the failover",
  );
  return { publishingAgainMs: Date.now() - killedAt };
}

test("Redis primary killed and its replica promoted: the nodes follow without a restart; what was lost is counted", async () => {
  await streamThrough((ctx) => failOver(ctx), async ({ subscribers, pub, detail }) => {
    // Wait for what can still arrive.
    await new Promise((r) => setTimeout(r, 500));
    let lost = 0;
    for (const [i, s] of subscribers.entries()) {
      for (let k = 1; k < s.got.length; k++) assert.ok(s.got[k] > s.got[k - 1], `subscriber ${i}: ${s.got[k]} after ${s.got[k - 1]}`);
      const got = new Set(s.got);
      const missed = pub.acked.filter((seq) => !got.has(seq)).length;
      // A loss is announced (a reset); nothing lost, no reset.
      if (missed > 0) assert.ok(s.recoveries.some((r) => !r.recovered), `subscriber ${i} missed ${missed} without a reset`);
      lost += missed;
    }
    const resets = subscribers.reduce((n, s) => n + s.recoveries.filter((r) => !r.recovered).length, 0);
    console.log(`Redis failover (primary killed, replica promoted after 300 ms, asynchronous replication): publishing again after ` +
      `${detail.publishingAgainMs} ms; ${pub.acked.length} acknowledged, ${pub.failed.length} refused during the failover; ` +
      `acknowledged but lost: ${lost / subscribers.length} per subscriber; resets: ${resets / subscribers.length} per subscriber`);
  }, { replica: true });
});

test("Redis failover with --redis-min-replicas 1: every acknowledged publication survives it, once and in order", async () => {
  await streamThrough((ctx) => failOver(ctx, { reattach: true }), async ({ subscribers, pub, detail }) => {
    const summary = await checkDelivery(subscribers, pub, "Redis failover, min replicas 1");
    // A publication the old primary delivered but could not confirm may be
    // gone: the nodes then restart their subscribers in a new epoch (a
    // reset), and nothing acknowledged is missed.
    const resets = subscribers.reduce((n, s) => n + s.recoveries.filter((r) => !r.recovered).length, 0);
    console.log(`Redis failover with --redis-min-replicas 1 (old primary back as a replica): publishing again after ` +
      `${detail.publishingAgainMs} ms; ${summary.acked} acknowledged, all delivered once and in order; ${summary.unacked} refused ` +
      `(${summary.unackedDeliveredPerSubscriber} of them delivered); resets: ${resets / subscribers.length} per subscriber`);
  }, { replica: true, nodeArgs: ["--redis-min-replicas", "1"] });
});

test("a replica promoted while the primary still took publications: the loss is found, every subscriber gets one reset, nothing acknowledged is missed", async () => {
  await streamThrough((ctx) => failOver(ctx, { promoteFirst: true }), async ({ subscribers, pub, detail }) => {
    // The 300 ms the new primary never had were delivered live before the
    // kill; after it, each node finds that its last publication is not in
    // the new primary's history, starts a new epoch and replays what the
    // new primary took since.
    const summary = await checkDelivery(subscribers, pub, "replica promoted early");
    for (const [i, s] of subscribers.entries()) {
      assert.equal(s.recoveries.filter((r) => !r.recovered).length, 1, `subscriber ${i}: one reset`);
    }
    console.log(`replica promoted 300 ms before the primary was killed: publishing again after ${detail.publishingAgainMs} ms ` +
      `after the kill; ${summary.acked} acknowledged, all delivered once and in order; every subscriber got one reset ` +
      `(the history lost the old primary's last 300 ms); ${summary.unacked} refused`);
  }, { replica: true });
});
