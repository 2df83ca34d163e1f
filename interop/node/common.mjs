// Shared by the Node interop peers: payloads, message sizes, bounded waits
// and an inbox for `ws` events. The command protocol spoken on /cmd is
// described in crates/ferrows/examples/interop/common.rs.

// Every frame-length encoding edge (7-bit, 16-bit, 64-bit) and two large
// messages, the largest under ferrows' default 16 MiB limits with room for
// deflate's growth of random data (see interop/common.rs).
export const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, (16 << 20) - (64 << 10)];

// The bound of every single wait, in milliseconds.
export const WAIT = 60_000;

// Characters of 1 to 4 bytes in UTF-8.
const PALETTE = ['a', 'b', ' ', 'z', '0', 'é', 'ß', 'Ω', '€', '中', '😀', '𝄞'];

// A deterministic pseudo-random generator (xorshift32).
export function rng(seed) {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

// `size` bytes of incompressible data.
export function binaryPayload(size, seed) {
  const next = rng(seed);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = next() & 0xff;
  return out;
}

// Exactly `size` bytes of UTF-8 with characters of every length: a random
// block of 8 KiB repeated, ASCII at the end.
export function textPayload(size, seed) {
  const next = rng(seed);
  let block = '';
  let blockLen = 0;
  while (blockLen < Math.min(size, 8192)) {
    const c = PALETTE[next() % PALETTE.length];
    const n = Buffer.byteLength(c);
    if (blockLen + n > size) break;
    block += c;
    blockLen += n;
  }
  const repeats = blockLen ? Math.floor(size / blockLen) : 0;
  return block.repeat(repeats) + 'x'.repeat(size - blockLen * repeats);
}

export function describe(message) {
  return typeof message === 'string'
    ? `text of ${Buffer.byteLength(message)} B`
    : `binary of ${message.length} B`;
}

export function checkSame(got, want, what) {
  const same =
    typeof want === 'string' ? got === want : Buffer.isBuffer(got) && Buffer.compare(got, want) === 0;
  if (!same) throw new Error(`${what}: sent ${describe(want)}, got ${describe(got)}`);
}

// `promise`, or an error naming `what` once WAIT has passed.
export function bounded(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT} ms: ${what}`)), WAIT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Collects a `ws` WebSocket's events so a test can await them in order:
// messages (text as strings, binary as Buffers), Pongs and the close.
export class Inbox {
  constructor(ws) {
    this.messages = [];
    this.pongs = [];
    this.waiters = [];
    this.closed = null;
    this.error = null;
    ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? data : data.toString('utf8'));
      this.wake();
    });
    ws.on('pong', (data) => {
      this.pongs.push(data);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.wake();
    });
    ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // Resolves with take() once it returns something other than undefined.
  async until(what, take) {
    return bounded(
      what,
      new Promise((resolve, reject) => {
        const check = () => {
          const value = take();
          if (value !== undefined) return resolve(value);
          if (this.error) return reject(new Error(`${what}: ${this.error.message}`));
          if (this.closed && take !== this.closeTaker)
            return reject(new Error(`${what}: closed with ${this.closed.code} ${this.closed.reason}`));
          this.waiters.push(check);
        };
        check();
      }),
    );
  }

  next(what) {
    return this.until(what, () => this.messages.shift());
  }

  pong(what) {
    return this.until(what, () => this.pongs.shift());
  }

  closeTaker = () => this.closed ?? undefined;

  close(what) {
    return this.until(what, this.closeTaker);
  }
}

export function parseArgs(argv, flags) {
  const args = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) args.positional.push(a);
    else if (flags.includes(a)) args[a.slice(2)] = true;
    else args[a.slice(2)] = argv[++i];
  }
  return args;
}
