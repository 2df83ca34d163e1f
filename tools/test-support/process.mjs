// Child processes for the JavaScript test helpers (e2e/, interop/node/,
// clients/js/test/): each started in a process group of its own, its output
// kept for failure reports, every wait on it bounded, and every one still
// running killed (the whole group, so a browser's helpers too) and every
// temporary directory removed when node exits, however it exits: normal
// end, uncaught error, SIGINT or SIGTERM. Only SIGKILL of node itself
// escapes: for that, the pid of each process also goes to
// $FERROWS_TEST_PIDFILE when set, for a shell script to kill what is left.
// Temporary directories are made under $FERROWS_TEST_TMP when set.
//
// No npm dependencies: imported by relative path from the three packages.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The default bound of a wait, in milliseconds. */
export const DEFAULT_WAIT_MS = 15_000;

/** `promise`, or an error naming `what` once `ms` have passed. */
export function bounded(what, promise, ms = DEFAULT_WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A TCP port of 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const children = new Set();
const tempDirs = new Set();

/** A fresh temporary directory, removed at exit if not before. */
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(process.env.FERROWS_TEST_TMP ?? os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  tempDirs.delete(dir);
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* gone */
  }
}

/** Kills every process still running (with its group) and removes every temporary directory, at once. */
export function killAll() {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
  for (const dir of tempDirs) {
    try {
      removeTempDir(dir);
    } catch {
      /* best effort: the caller's script may remove its own temporary root */
    }
  }
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/**
 * A child process in a group of its own, with its output (stdout and
 * stderr, the last 64 KiB) kept. It does not keep node alive: a test that
 * forgets it still ends, and the exit hook kills it.
 */
export class Proc {
  constructor(name, command, args) {
    this.name = name;
    this.output = '';
    this.exited = null;
    this.child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = { code, signal };
        children.delete(this.child);
        resolve(this.exited);
      });
      this.child.once('error', (err) => {
        this.exited = { error: err.message, code: err.code };
        children.delete(this.child);
        resolve(this.exited);
      });
    });
    if (this.child.pid === undefined) return; // spawn failed: `exit` says why
    children.add(this.child);
    if (process.env.FERROWS_TEST_PIDFILE) fs.appendFileSync(process.env.FERROWS_TEST_PIDFILE, `${this.child.pid}\n`);
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-65536);
      this._check?.();
    };
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.on('data', keep);
      stream.unref?.();
    }
    this.child.unref();
  }

  /** Waits (at most `ms`) until the output matches `re`; returns the match. */
  waitOutput(what, re, ms = DEFAULT_WAIT_MS) {
    return bounded(
      `${this.name}: ${what}`,
      new Promise((resolve, reject) => {
        this._check = () => {
          const m = this.output.match(re);
          if (m) {
            this._check = null;
            resolve(m);
          }
        };
        this._check();
        this.exit.then((e) => reject(new Error(`${this.name} exited (${JSON.stringify(e)}) before ${what}:\n${this.tail()}`)));
      }),
      ms,
    );
  }

  /** Sends `signal` to the process group and waits (at most `ms`) for the process to exit. */
  async stop(signal = 'SIGTERM', ms = DEFAULT_WAIT_MS) {
    if (this.exited) return this.exited;
    killGroup(this.child, signal);
    return bounded(`${this.name}: exit after ${signal}`, this.exit, ms);
  }

  /** Stops the process group, politely first (SIGTERM, 3 s), for sure in the end (SIGKILL, also
   * to what is left of the group once its leader is gone). */
  async kill() {
    if (this.exited) return;
    killGroup(this.child, 'SIGTERM');
    await Promise.race([this.exit, new Promise((r) => setTimeout(r, 3000))]);
    killGroup(this.child, 'SIGKILL');
    await Promise.race([this.exit, new Promise((r) => setTimeout(r, 3000))]);
  }

  /** The last lines of the output, indented, for an error message. */
  tail(lines = 30) {
    return this.output.trimEnd().split('\n').slice(-lines).map((l) => `  | ${l}`).join('\n');
  }
}
