// A real redis-server for the JavaScript tests: the one launcher of e2e/
// (the Redis broker scenario) and clients/js/test/ (the failover tests).
//
// redis-server cannot listen on port 0 and tell its port, so a port found
// free on 127.0.0.1 is tried, and another one (up to 5 in all) when the
// server exits before it is ready (the port taken in between). Each server
// has a temporary directory of its own; readiness ("Ready to accept
// connections" in its log) is awaited with a bound; kill() and stop() wait
// for the exit with a bound, stop() removes the directory, and process.mjs's
// exit hook kills and removes whatever is left on any other way out.
//
// No snapshots (--save ""). Options: `appendonly` (every write is in the
// append-only file, fsync always, before Redis answers: a restart keeps
// what was acknowledged) and `replicaOf` (another RedisServer this one
// replicates, changeable before a restart). Replicas sync at once and
// without files (diskless sync, no delay). A restart (start() after kill())
// keeps the port and the files.
import { DEFAULT_WAIT_MS, Proc, bounded, freePort, removeTempDir, tempDir } from './process.mjs';

const INSTALL = 'install it: scripts/install-redis.sh (as root)';

export class RedisServer {
  constructor({ appendonly = false, replicaOf = null, wait = DEFAULT_WAIT_MS } = {}) {
    this.appendonly = appendonly;
    this.replicaOf = replicaOf;
    this.wait = wait;
    this.port = 0;
    this.dir = null;
    this.proc = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it (again, on the same port and files, after kill()); resolves once it is ready. */
  async start() {
    const restart = this.port !== 0;
    this.dir ??= tempDir('ferrows-redis-');
    for (let attempt = 1; ; attempt++) {
      if (!restart) this.port = await freePort();
      const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
      args.push('--appendonly', this.appendonly ? 'yes' : 'no', '--appendfsync', 'always');
      args.push('--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0');
      if (this.replicaOf) args.push('--replicaof', '127.0.0.1', String(this.replicaOf.port));
      this.proc = new Proc(`redis-server :${this.port}`, 'redis-server', args);
      try {
        await this.proc.waitOutput('ready', /Ready to accept connections/, this.wait);
        return this;
      } catch (e) {
        await this.proc.kill();
        if (this.proc.exited?.code === 'ENOENT') throw new Error(`redis-server not found: ${INSTALL}`);
        if (restart || attempt >= 5) throw e;
      }
    }
  }

  /** Runs one command with redis-cli; resolves with its output. */
  async cli(...command) {
    const cli = new Proc('redis-cli', 'redis-cli', ['-p', String(this.port), ...command]);
    await bounded(`redis-cli ${command.join(' ')}`, cli.exit, this.wait);
    return cli.output.trim();
  }

  /** Kills it (by default with SIGKILL: nothing is flushed but what was already written); keeps its files. */
  async kill(signal = 'SIGKILL') {
    await this.proc?.stop(signal, this.wait);
  }

  /** Kills it and removes its files. */
  async stop() {
    await this.kill();
    if (this.dir) removeTempDir(this.dir);
    this.dir = null;
  }
}
