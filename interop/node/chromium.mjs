#!/usr/bin/env node
// Headless Chromium (Debian's /usr/bin/chromium, started by
// tools/test-support/chromium.mjs and driven by playwright-core) as the
// client of a ferrows server, for the interop tests.
//
//   node chromium.mjs URL [--expect-compression yes|no] [--commands]
//                         [--spki BASE64_SHA256_OF_SPKI] [--expect-untrusted]
//
// A page opens URL/echo/ID (ws:// or wss://; for wss, Chromium trusts the
// test certificate through --ignore-certificate-errors-spki-list) and
// checks text and binary echoes of every size in SIZES byte for byte, a
// burst of small messages, and a Close 4001 "bye" that the server must
// echo. With --commands (the server speaks the command protocol on
// URL/cmd): the server saw 4001 "bye", messages the server sends
// (fragmented if it is set to), a Ping from the server (Chromium answers
// it), and the server's Close 4000 "done". Browsers cannot send Pings or
// fragments: those directions are covered by the Python and Node clients.
// With --expect-untrusted (a wss:// URL and no --spki), it checks instead
// that Chromium refuses the test certificate: the pin is what makes the
// wss:// tests pass, not some leniency.
import { launchChromium } from '../../tools/test-support/chromium.mjs';
import { SIZES, WAIT, bounded, parseArgs } from './common.mjs';

const args = parseArgs(process.argv.slice(2), ['--commands', '--expect-untrusted']);
const base = (args.positional[0] ?? '').replace(/\/+$/, '');

// Runs in the page: everything it needs is inside.
async function pageTest({ base, id, sizes, wait, expectCompression, commands }) {
  const log = (line) => console.log(line);
  const PALETTE = ['a', 'b', ' ', 'z', '0', 'é', 'ß', 'Ω', '€', '中', '😀', '𝄞'];
  const utf8 = new TextEncoder();
  const rng = (seed) => {
    let x = (seed * 2654435761) >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      return x;
    };
  };
  const binaryPayload = (size, seed) => {
    const next = rng(seed);
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i++) out[i] = next() & 0xff;
    return out;
  };
  const textPayload = (size, seed) => {
    const next = rng(seed);
    let block = '';
    let blockLen = 0;
    while (blockLen < Math.min(size, 8192)) {
      const c = PALETTE[next() % PALETTE.length];
      const n = utf8.encode(c).length;
      if (blockLen + n > size) break;
      block += c;
      blockLen += n;
    }
    const repeats = blockLen ? Math.floor(size / blockLen) : 0;
    return block.repeat(repeats) + 'x'.repeat(size - blockLen * repeats);
  };
  const describe = (m) =>
    typeof m === 'string' ? `text of ${utf8.encode(m).length} B` : `binary of ${m.byteLength} B`;
  const checkSame = (got, want, what) => {
    let same;
    if (typeof want === 'string') same = got === want;
    else if (!(got instanceof ArrayBuffer) || got.byteLength !== want.byteLength) same = false;
    else {
      const g = new Uint8Array(got);
      same = true;
      for (let i = 0; i < g.length; i++) {
        if (g[i] !== want[i]) {
          same = false;
          break;
        }
      }
    }
    if (!same) throw new Error(`${what}: sent ${describe(want)}, got ${describe(got)}`);
  };
  const b64 = (bytes) => {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const concat = (parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const bounded = (what, promise) => {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${wait} ms: ${what}`)), wait);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  };

  // A WebSocket with its events queued for awaiting in order.
  const open = async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const conn = { ws, messages: [], closed: null, waiters: [] };
    const wake = () => conn.waiters.splice(0).forEach((w) => w());
    ws.onmessage = (e) => {
      conn.messages.push(e.data);
      wake();
    };
    ws.onclose = (e) => {
      conn.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      wake();
    };
    const until = (what, take) =>
      bounded(
        what,
        new Promise((resolve, reject) => {
          const check = () => {
            const v = take();
            if (v !== undefined) return resolve(v);
            if (conn.closed && take !== takeClose)
              return reject(new Error(`${what}: closed with ${conn.closed.code} ${conn.closed.reason}`));
            conn.waiters.push(check);
          };
          check();
        }),
      );
    const takeClose = () => conn.closed ?? undefined;
    conn.next = (what) => until(what, () => conn.messages.shift());
    conn.close = (what) => until(what, takeClose);
    await bounded(
      `connect ${url}`,
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`connect ${url}: error event`));
      }),
    );
    return conn;
  };

  const url = `${base}/echo/${id}`;
  const conn = await open(url);
  const { ws } = conn;
  const compressed = ws.extensions.includes('permessage-deflate');
  log(`connected to ${url} (extensions: ${ws.extensions || 'none'})`);
  if (expectCompression !== undefined && compressed !== (expectCompression === 'yes'))
    throw new Error(`permessage-deflate in force: ${compressed}, expected ${expectCompression}`);

  for (const [i, size] of sizes.entries()) {
    for (const message of [textPayload(size, i), binaryPayload(size, 1000 + i)]) {
      const what = `echo of ${describe(message)}`;
      ws.send(message);
      checkSame(await conn.next(what), message, what);
    }
  }
  log(`ok: text and binary echoes of [${sizes.join(', ')}] bytes`);

  const next = rng(77);
  const sent = [];
  for (let i = 0; i < 200; i++) {
    const size = next() % 600;
    const message = i % 2 === 0 ? textPayload(size, 5000 + i) : binaryPayload(size, 5000 + i);
    ws.send(message);
    sent.push(message);
  }
  for (const [i, want] of sent.entries()) checkSame(await conn.next('burst echo'), want, `echo ${i} of the burst`);
  log(`ok: burst of ${sent.length} small messages echoed in order`);

  ws.close(4001, 'bye');
  const closed = await conn.close('closing handshake');
  if (closed.code !== 4001 || !closed.wasClean)
    throw new Error(`the server answered our Close 4001 with ${JSON.stringify(closed)}`);
  log('ok: Close 4001 echoed by the server (clean close)');

  if (!commands) return;
  const cmd = await open(`${base}/cmd`);
  const command = async (line) => {
    cmd.ws.send(line);
    return cmd.next(`answer to ${line.split(' ')[0]}`);
  };
  const seen = await command(`close-seen ${id}`);
  if (seen !== 'closed 4001 bye') throw new Error(`the server saw our Close as ${seen}, expected 'closed 4001 bye'`);
  log("ok: the server saw Close 4001 'bye'");

  const whole = utf8.encode('fragments: héllo wörld 😀 𝄞 中文');
  const textParts = [new Uint8Array(0), whole.subarray(0, 5), whole.subarray(5, 21), whole.subarray(21)];
  const big = utf8.encode(textPayload(300_000, 9));
  const bigParts = [big.subarray(0, 100_001), big.subarray(100_001, 200_003), big.subarray(200_003)];
  const blobs = [0, 1, 125, 65536, 1 << 20, 7].map((n, i) => binaryPayload(n, 300 + i));
  for (const [kind, parts] of [['text', textParts], ['text', bigParts], ['binary', blobs]]) {
    const joined = concat(parts);
    const want = kind === 'text' ? new TextDecoder().decode(joined) : joined;
    const got = await command(`fragments ${kind} ${parts.map(b64).join(',')}`);
    checkSame(got, want, `${kind} message of ${parts.length} parts from the server`);
  }
  log('ok: messages sent by the server (in fragments where it fragments) received whole');

  const payload = b64(utf8.encode('server ping ✓'));
  const answer = await command(`ping ${payload}`);
  if (answer !== `pong ${payload}`) throw new Error(`the server's Ping: it reported ${answer}`);
  log("ok: the server's Ping was answered by Chromium");

  cmd.ws.send('close 4000 done');
  const serverClose = await cmd.close("the server's Close");
  if (serverClose.code !== 4000 || serverClose.reason !== 'done' || !serverClose.wasClean)
    throw new Error(`the server's Close: got ${JSON.stringify(serverClose)}, expected clean 4000 done`);
  log("ok: the server's Close 4000 'done' arrived (clean close)");
}

// Runs in the page: a connection that must fail (1006, never open).
async function pageRefused({ url, wait }) {
  const ws = new WebSocket(url);
  const outcome = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no outcome in time'), wait);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve('opened');
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      resolve(`closed ${e.code}`);
    };
  });
  if (outcome !== 'closed 1006') throw new Error(`untrusted certificate: expected closed 1006, got ${outcome}`);
  console.log(`ok: Chromium refused the untrusted certificate of ${url}`);
}

async function run() {
  if (!base) throw new Error('usage: node chromium.mjs URL [options]');
  const flags = ['--disable-quic'];
  if (args.spki) flags.push(`--ignore-certificate-errors-spki-list=${args.spki}`);
  const chrome = await launchChromium({
    from: import.meta.url,
    install: 'run scripts/install-interop.sh (as root)',
    args: flags,
    wait: WAIT,
  });
  try {
    const page = await chrome.browser.newPage();
    page.on('console', (m) => console.log(m.text()));
    const id = `chromium-${process.pid}`;
    if (args['expect-untrusted']) {
      await bounded('the page test', page.evaluate(pageRefused, { url: `${base}/echo/${id}`, wait: WAIT }));
      return;
    }
    const test = page.evaluate(pageTest, {
      base,
      id,
      sizes: SIZES,
      wait: WAIT,
      expectCompression: args['expect-compression'],
      commands: Boolean(args.commands),
    });
    // Each wait in the page is bounded; this bounds the whole.
    await bounded('the page test', test);
  } finally {
    await chrome.close();
  }
}

try {
  await run();
  console.log('chromium client: all checks passed');
  process.exit(0);
} catch (e) {
  console.error(`chromium client: FAILED: ${e.message ?? e}`);
  process.exit(1);
}
