#!/usr/bin/env node
// Node `ws` as the client of a ferrows server, for the interop tests.
//
//   node client.mjs URL [--no-compression] [--expect-compression yes|no]
//                       [--ca CERT.pem] [--commands]
//
// Against URL/echo/ID: text and binary echoes of every size in SIZES byte
// for byte, a burst of small messages, fragmented messages sent with
// send(part, { fin: false }) (text split inside characters, empty
// fragments, megabyte fragments, compressed when deflate is in force, a
// Ping between two fragments), a Ping answered by a Pong, and a Close
// 4001 "bye" that the server must echo. With --commands (the server speaks
// the command protocol on URL/cmd): the server saw 4001 "bye", messages
// the server sends (fragmented if it is set to), a Ping from the server,
// and the server's Close 4000 "done". Every wait is bounded; exit code 0
// when every check passed.
import fs from 'node:fs';
import WebSocket from 'ws';
import {
  Inbox,
  SIZES,
  binaryPayload,
  bounded,
  checkSame,
  describe,
  parseArgs,
  rng,
  textPayload,
} from './common.mjs';

const args = parseArgs(process.argv.slice(2), ['--no-compression', '--commands']);
const base = (args.positional[0] ?? '').replace(/\/+$/, '');
const log = (line) => console.log(line);

async function open(url) {
  const ws = new WebSocket(url, {
    perMessageDeflate: !args['no-compression'],
    maxPayload: 64 << 20,
    ca: args.ca ? fs.readFileSync(args.ca) : undefined,
    handshakeTimeout: 60_000,
  });
  const inbox = new Inbox(ws);
  await bounded(
    `connect ${url}`,
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
  );
  return { ws, inbox };
}

// Sends and waits until ws has handed the data to the socket.
function send(ws, data, options = {}) {
  return bounded(
    'send',
    new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve()))),
  );
}

async function echoSizes({ ws, inbox }) {
  for (const [i, size] of SIZES.entries()) {
    for (const message of [textPayload(size, i), binaryPayload(size, 1000 + i)]) {
      const what = `echo of ${describe(message)}`;
      await send(ws, message, { binary: typeof message !== 'string' });
      checkSame(await inbox.next(what), message, what);
    }
  }
  log(`ok: text and binary echoes of [${SIZES.join(', ')}] bytes`);
}

async function echoBurst({ ws, inbox }) {
  const next = rng(77);
  const sent = [];
  for (let i = 0; i < 200; i++) {
    const size = next() % 600;
    const message = i % 2 === 0 ? textPayload(size, 5000 + i) : binaryPayload(size, 5000 + i);
    ws.send(message, { binary: typeof message !== 'string' });
    sent.push(message);
  }
  for (const [i, want] of sent.entries()) checkSame(await inbox.next('burst echo'), want, `echo ${i} of the burst`);
  log(`ok: burst of ${sent.length} small messages echoed in order`);
}

// Sends `parts` as the fragments of one message, a Ping after the first.
async function sendFragments(ws, parts, binary) {
  for (const [i, part] of parts.entries()) {
    await send(ws, part, { binary, fin: i === parts.length - 1 });
    if (i === 0 && parts.length > 1) ws.ping('between fragments');
  }
}

async function fragmentedToServer({ ws, inbox }) {
  const whole = Buffer.from('héllo, wörld: 1€ 😀 𝄞 中文!');
  const split = [Buffer.alloc(0)];
  for (let i = 0; i < whole.length; i += 3) split.push(whole.subarray(i, i + 3));
  split.push(Buffer.alloc(0));
  // A first fragment of 2 KiB: ws compresses a fragmented message when
  // its first fragment reaches the 1 KiB threshold.
  const long = Buffer.from(textPayload(300_000, 9));
  const longParts = [long.subarray(0, 2049), long.subarray(2049, 150_001), long.subarray(150_001)];
  const blobs = [1 << 20, 0, 3 << 20, 1].map((n, i) => binaryPayload(n, 700 + i));
  const cases = [
    ['text split inside characters, empty fragments', split, false],
    ['300 kB of text in 3 fragments', longParts, false],
    ['4 MiB of binary in 4 fragments', blobs, true],
  ];
  for (const [what, parts, binary] of cases) {
    const want = binary ? Buffer.concat(parts) : Buffer.concat(parts).toString('utf8');
    await sendFragments(ws, parts, binary);
    checkSame(await inbox.next(what), want, what);
    // The Pong to the Ping sent between the fragments.
    await inbox.pong(`Pong to the Ping between fragments (${what})`);
  }
  log('ok: fragmented messages reassembled and echoed (split inside characters, 4 MiB, Ping between fragments)');
}

async function pingPong({ ws, inbox }) {
  const payload = Buffer.from('node ping ✓');
  ws.ping(payload);
  const pong = await inbox.pong('Pong');
  if (Buffer.compare(pong, payload) !== 0) throw new Error(`Pong with ${pong}, expected ${payload}`);
  log('ok: Ping answered by a Pong with the same payload');
}

async function close4001({ ws, inbox }) {
  ws.close(4001, 'bye');
  const closed = await inbox.close('closing handshake');
  if (closed.code !== 4001) throw new Error(`the server answered our Close 4001 with ${closed.code}`);
  log('ok: Close 4001 echoed by the server');
}

async function command(conn, line) {
  await send(conn.ws, line);
  return conn.inbox.next(`answer to ${line.split(' ')[0]}`);
}

async function commands(id) {
  const cmd = await open(`${base}/cmd`);
  const seen = await command(cmd, `close-seen ${id}`);
  if (seen !== 'closed 4001 bye') throw new Error(`the server saw our Close as ${seen}, expected 'closed 4001 bye'`);
  log("ok: the server saw Close 4001 'bye'");

  const whole = Buffer.from('fragments: héllo wörld 😀 𝄞 中文');
  const textParts = [Buffer.alloc(0), whole.subarray(0, 5), whole.subarray(5, 21), Buffer.alloc(0), whole.subarray(21)];
  const big = Buffer.from(textPayload(300_000, 9));
  const bigParts = [big.subarray(0, 100_001), big.subarray(100_001, 200_003), big.subarray(200_003)];
  const blobs = [0, 1, 125, 65536, 1 << 20, 7].map((n, i) => binaryPayload(n, 300 + i));
  for (const [kind, parts] of [['text', textParts], ['text', bigParts], ['binary', blobs]]) {
    const joined = Buffer.concat(parts);
    const want = kind === 'text' ? joined.toString('utf8') : joined;
    const got = await command(cmd, `fragments ${kind} ${parts.map((p) => p.toString('base64')).join(',')}`);
    checkSame(got, want, `${kind} message of ${parts.length} parts from the server`);
  }
  log('ok: messages sent by the server (in fragments where it fragments) received whole');

  const payload = Buffer.from('server ping ✓').toString('base64');
  const answer = await command(cmd, `ping ${payload}`);
  if (answer !== `pong ${payload}`) throw new Error(`the server's Ping: it reported ${answer}`);
  log("ok: the server's Ping was answered");

  await send(cmd.ws, 'close 4000 done');
  const closed = await cmd.inbox.close("the server's Close");
  if (closed.code !== 4000 || closed.reason !== 'done')
    throw new Error(`the server's Close: got ${closed.code} ${closed.reason}, expected 4000 done`);
  log("ok: the server's Close 4000 'done' arrived");
}

async function run() {
  if (!base) throw new Error('usage: node client.mjs URL [options]');
  const id = `node-${process.pid}`;
  const url = `${base}/echo/${id}`;
  const conn = await open(url);
  const compressed = conn.ws.extensions.split(',').includes('permessage-deflate');
  log(`connected to ${url} (extensions: ${conn.ws.extensions || 'none'})`);
  if (args['expect-compression'] && compressed !== (args['expect-compression'] === 'yes'))
    throw new Error(`permessage-deflate in force: ${compressed}, expected ${args['expect-compression']}`);
  await echoSizes(conn);
  await echoBurst(conn);
  await fragmentedToServer(conn);
  await pingPong(conn);
  await close4001(conn);
  if (args.commands) await commands(id);
}

try {
  await run();
  log('node client: all checks passed');
  process.exit(0);
} catch (e) {
  console.error(`node client: FAILED: ${e.stack ?? e}`);
  process.exit(1);
}
