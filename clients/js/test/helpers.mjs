// Test helpers: the real server as a child process, the server API, waiting
// on events with a deadline, and HS256 tokens.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");
export const FERROWS_BIN = path.resolve(repoRoot, process.env.FERROWS_BIN ?? "target/release/ferrows");
export const API_KEY = "test-key";
/** Every wait in the tests is bounded by this. */
export const WAIT_MS = 10000;

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts `ferrows serve --port <port> --api-key test-key ...args` and resolves
 * once it prints `listening on http://127.0.0.1:PORT`.
 */
export async function startServer({ port = 0, args = [] } = {}) {
  const argv = ["serve", "--port", String(port), "--api-key", API_KEY, ...args];
  const child = spawn(FERROWS_BIN, argv, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
  let output = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const listening = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      output += chunk;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) resolve(Number(m[1]));
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", (chunk) => { output += chunk; });
    child.once("error", reject);
    exited.then(({ code, signal }) => reject(new Error(`ferrows serve exited (${code ?? signal}) before listening:\n${output}`)));
  });
  let boundPort;
  try {
    boundPort = await withTimeout(listening, `"listening on" from ${FERROWS_BIN} ${argv.join(" ")}`);
  } catch (e) {
    child.kill("SIGKILL");
    throw new Error(`${e.message}\n--- server output ---\n${output}`);
  }
  return {
    port: boundPort,
    http: `http://127.0.0.1:${boundPort}`,
    ws: `ws://127.0.0.1:${boundPort}/ws`,
    child,
    output: () => output,
    /** Stops the server (SIGTERM, then SIGKILL if it lingers) and waits for it to exit. */
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      try {
        return await withTimeout(exited, "the server to exit", 5000);
      } catch {
        child.kill("SIGKILL");
        return withTimeout(exited, "the server to exit after SIGKILL", 5000);
      }
    },
  };
}

/** POST /api/publish; resolves with the parsed JSON answer. */
export async function apiPublish(server, channel, data) {
  const res = await withTimeout(fetch(`${server.http}/api/publish`, {
    method: "POST",
    headers: { Authorization: `apikey ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ channel, data }),
  }), "POST /api/publish");
  const body = await res.json();
  if (res.status !== 200) throw new Error(`POST /api/publish: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * Collects values (publications, events) and lets a test wait until the
 * collected list satisfies a predicate, with a deadline.
 */
export class Collector {
  constructor() {
    this.items = [];
    this._waiters = [];
  }

  push = (item) => {
    this.items.push(item);
    this._waiters = this._waiters.filter((w) => !w.check());
  };

  /** Resolves with the items once `predicate(items)` holds. */
  until(predicate, what, ms = WAIT_MS) {
    return withTimeout(new Promise((resolve) => {
      const w = { check: () => (predicate(this.items) ? (resolve(this.items), true) : false) };
      if (!w.check()) this._waiters.push(w);
    }), `${what} (got ${JSON.stringify(this.items).slice(0, 500)})`, ms);
  }

  /** Resolves once at least `n` items were collected. */
  count(n, what = `${n} items`, ms = WAIT_MS) {
    return this.until((items) => items.length >= n, what, ms);
  }
}

/** Resolves with the arguments of the next `event` of `client` that satisfies `predicate`. */
export function nextEvent(client, event, predicate = () => true, what = `event ${event}`, ms = WAIT_MS) {
  let off;
  return withTimeout(new Promise((resolve) => {
    off = client.on(event, (...args) => { if (predicate(...args)) resolve(args); });
  }), what, ms).finally(() => off());
}

/** Resolves once the client is connected. */
export function connected(client, ms = WAIT_MS) {
  if (client.state === "connected") return Promise.resolve();
  return nextEvent(client, "state", (s) => s === "connected", "state connected", ms);
}

/** An HS256 JWT. */
export function hs256(secret, claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** A unique channel name per test so tests cannot see each other's traffic. */
let serial = 0;
export function uniqueChannel(prefix = "chat") {
  serial += 1;
  return `${prefix}:t${process.pid}-${serial}`;
}

/** A port of 127.0.0.1 that was free a moment ago. */
async function freePort() {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * A real `redis-server` on a free port of 127.0.0.1, in a directory of its
 * own. `appendonly`: every write is in the append-only file (fsync always)
 * before Redis answers, so a restart keeps what was acknowledged.
 * `replicaOf`: another RedisServer this one replicates.
 */
export class RedisServer {
  constructor({ appendonly = false, replicaOf = null } = {}) {
    this.appendonly = appendonly;
    this.replicaOf = replicaOf;
    this.port = 0;
    this.dir = null;
    this.child = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it (again, on the same port and files, after `kill`). */
  async start() {
    const { mkdtempSync } = await import("node:fs");
    const os = await import("node:os");
    this.dir ??= mkdtempSync(path.join(os.tmpdir(), "ferrows-js-redis-"));
    // A port found free may be taken before redis binds it: try another
    // (only on the first start: a restart keeps its port).
    for (let attempt = 1; ; attempt++) {
      if (!this.port || (attempt > 1 && !this._started)) this.port = await freePort();
      const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", ""];
      args.push("--appendonly", this.appendonly ? "yes" : "no", "--appendfsync", "always");
      // Replicas sync at once, without files.
      args.push("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0");
      if (this.replicaOf) args.push("--replicaof", "127.0.0.1", String(this.replicaOf.port));
      const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const ready = new Promise((resolve, reject) => {
        const onData = (chunk) => {
          output += chunk;
          if (/Ready to accept connections/.test(output)) resolve();
        };
        child.stdout.setEncoding("utf8").on("data", onData);
        child.stderr.setEncoding("utf8").on("data", onData);
        child.once("error", reject);
        child.once("exit", (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)));
      });
      try {
        await withTimeout(ready, "redis-server to be ready");
        this.child = child;
        this._started = true;
        return this;
      } catch (e) {
        child.kill("SIGKILL");
        if (attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Sends one command with redis-cli; resolves with its output. */
  async cli(...command) {
    const child = spawn("redis-cli", ["-p", String(this.port), ...command], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c) => { out += c; });
    await withTimeout(new Promise((resolve) => child.once("exit", resolve)), `redis-cli ${command.join(" ")}`);
    return out.trim();
  }

  /** Kills it (SIGKILL: nothing is flushed but what was already written). */
  async kill(signal = "SIGKILL") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await withTimeout(exited, "redis-server to exit");
  }

  /** Kills it and removes its files. */
  async stop() {
    await this.kill();
    if (this.dir) {
      const { rmSync } = await import("node:fs");
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
