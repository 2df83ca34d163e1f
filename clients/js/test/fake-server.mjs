// A minimal scripted WebSocket server (RFC 6455 text frames only) for the
// client behaviours the real server cannot be made to show on demand:
// unanswered commands, chosen close codes, duplicated publications.
import { createServer } from "node:http";
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function frame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len])
    : len < 65536 ? Buffer.from([0x80 | opcode, 126, len >> 8, len & 255])
      : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | opcode; b[1] = 127; b.writeBigUInt64BE(BigInt(len), 2); return b; })();
  return Buffer.concat([head, payload]);
}

class FakeConnection {
  constructor(socket) {
    this.socket = socket;
    this.closed = false;
    this._buf = Buffer.alloc(0);
    this.onCommand = () => {};
    socket.on("data", (data) => this._read(data));
    socket.on("close", () => { this.closed = true; });
    socket.on("error", () => {});
  }

  _read(data) {
    this._buf = Buffer.concat([this._buf, data]);
    for (;;) {
      const b = this._buf;
      if (b.length < 2) return;
      const opcode = b[0] & 15;
      let len = b[1] & 127;
      let at = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); at = 10; }
      if (b.length < at + 4 + len) return;
      const mask = b.subarray(at, at + 4);
      const payload = Buffer.from(b.subarray(at + 4, at + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      this._buf = b.subarray(at + 4 + len);
      if (opcode === 1) this.onCommand(JSON.parse(payload.toString("utf8")));
      else if (opcode === 8) { this._write(frame(8, payload.subarray(0, 2))); this.socket.end(); }
      else if (opcode === 9) this._write(frame(10, payload));
    }
  }

  _write(bytes) {
    if (!this.closed) this.socket.write(bytes);
  }

  /** Sends one JSON message. */
  send(obj) {
    this._write(frame(1, Buffer.from(JSON.stringify(obj))));
  }

  /** Sends a Close frame with `code` and ends the TCP connection. */
  close(code, reason = "") {
    const payload = Buffer.concat([Buffer.from([code >> 8, code & 255]), Buffer.from(reason)]);
    this._write(frame(8, payload));
    this.socket.end();
  }
}

/**
 * Starts a fake server on 127.0.0.1; `onConnection(conn)` is called for every
 * WebSocket (set `conn.onCommand = (cmd) => ...`).
 */
export async function startFakeServer(onConnection, port = 0) {
  const sockets = new Set();
  const server = createServer((req, res) => { res.writeHead(404).end(); });
  server.on("upgrade", (req, socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + GUID).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    onConnection(new FakeConnection(socket));
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    ws: `ws://127.0.0.1:${server.address().port}/ws`,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Answers `connect` like the real server; other commands go to `handle(conn, cmd)`. */
export function scripted(handle, connections = []) {
  return (conn) => {
    connections.push(conn);
    conn.onCommand = (cmd) => {
      if (cmd.connect) conn.send({ id: cmd.id, result: { client: `c${connections.length}`, user: "", ping: 0 } });
      else handle(conn, cmd);
    };
  };
}
