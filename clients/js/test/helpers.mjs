// Test helpers: the real server as a child process, the server API, waiting
// on events with a deadline, and HS256 tokens.
import { spawn } from "node:child_process";
import { before, after } from "node:test";
import { createHmac } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "../ferrows.js";

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

/**
 * One server for a whole test file, started before its first test, and the
 * clients made by `client` (not connected) and `connectedClient`, all
 * closed after its last test. `clientOptions` apply to every client, the
 * options of one call on top.
 */
export function serverForFile({ args = [], clientOptions = {} } = {}) {
  const file = { server: undefined, clients: [] };
  before(async () => { file.server = await startServer({ args }); });
  after(async () => {
    for (const c of file.clients) c.disconnect();
    await file.server?.stop();
  });
  file.client = (options = {}) => {
    const defaults = { minReconnectDelay: 50, maxReconnectDelay: 500, ...clientOptions };
    const client = new Client(file.server.ws, { ...defaults, ...options });
    file.clients.push(client);
    return client;
  };
  file.connectedClient = async (options = {}) => {
    const client = file.client(options);
    client.connect();
    await connected(client);
    return client;
  };
  return file;
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

/** A real redis-server: the launcher shared with e2e/ (tools/test-support/redis.mjs). */
export { RedisServer } from "../../../tools/test-support/redis.mjs";
