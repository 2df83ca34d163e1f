#!/usr/bin/env node
// A Node `ws` echo server for ferrows' interop tests.
//
//   node echo_server.mjs [--port 0] [--no-compression] [--cert C --key K]
//
// Prints `listening on ws://127.0.0.1:PORT` (or wss://) once it listens.
// Every path echoes data messages; /cmd speaks the command protocol
// (crates/ferrows/examples/interop/common.rs): fragmented messages sent
// with send(part, { fin: false }) and a Ping between the first two
// fragments, a Ping that the client must answer, a Close with a chosen
// code, and the Close frame each /echo/ID connection received.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { WebSocketServer } from 'ws';
import { WAIT, parseArgs } from './common.mjs';

const args = parseArgs(process.argv.slice(2), ['--no-compression']);
const options = {
  perMessageDeflate: !args['no-compression'],
  maxPayload: 64 << 20,
};

// id of an echo connection -> the Close it received ({ code, reason }).
const seen = new Map();

function echo(ws, id) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => {
    if (id !== null) seen.set(id, { code, reason: reason.toString('utf8') });
  });
}

async function closeSeen(id) {
  const deadline = Date.now() + WAIT;
  while (!seen.has(id)) {
    if (Date.now() > deadline) return `unknown ${id}`;
    await new Promise((r) => setTimeout(r, 10));
  }
  const { code, reason } = seen.get(id);
  // 1005: the Close had no code.
  return code === 1005 ? 'closed none' : `closed ${code} ${reason}`;
}

function commands(ws) {
  const pongWaiters = [];
  ws.on('pong', (data) => {
    const i = pongWaiters.findIndex((w) => Buffer.compare(w.payload, data) === 0);
    if (i >= 0) pongWaiters.splice(i, 1)[0].resolve();
  });
  ws.on('message', async (data, isBinary) => {
    if (isBinary) return;
    const line = data.toString('utf8');
    const space = line.indexOf(' ');
    const op = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    try {
      if (op === 'fragments') {
        const [kind, list = ''] = rest.split(' ');
        const parts = list.split(',').map((p) => Buffer.from(p, 'base64'));
        parts.forEach((part, i) => {
          ws.send(part, { binary: kind === 'binary', fin: i === parts.length - 1 });
          // A control frame between two fragments of one message.
          if (i === 0 && parts.length > 1) ws.ping('between fragments');
        });
      } else if (op === 'ping') {
        const payload = Buffer.from(rest, 'base64');
        let timer;
        await new Promise((resolve, reject) => {
          pongWaiters.push({ payload, resolve });
          timer = setTimeout(() => reject(new Error('no Pong')), WAIT);
          ws.ping(payload);
        }).finally(() => clearTimeout(timer));
        ws.send(`pong ${rest}`);
      } else if (op === 'close') {
        const space2 = rest.indexOf(' ');
        const code = Number(space2 < 0 ? rest : rest.slice(0, space2));
        ws.close(code, space2 < 0 ? '' : rest.slice(space2 + 1));
      } else if (op === 'close-seen') {
        ws.send(await closeSeen(rest));
      } else {
        throw new Error(`unknown command ${op}`);
      }
    } catch (e) {
      console.error(`node server: ${op}: ${e.message}`);
      ws.close(1011, 'command failed');
    }
  });
}

const server = args.cert
  ? https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
  : http.createServer();
const wss = new WebSocketServer({ server, ...options });
wss.on('connection', (ws, req) => {
  ws.on('error', (e) => console.error(`node server: ${req.url}: ${e.message}`));
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/cmd') commands(ws);
  else echo(ws, path.startsWith('/echo/') ? path.slice('/echo/'.length) : null);
});
server.listen(Number(args.port ?? 0), '127.0.0.1', () => {
  const scheme = args.cert ? 'wss' : 'ws';
  console.log(`listening on ${scheme}://127.0.0.1:${server.address().port}`);
});
