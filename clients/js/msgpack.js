/**
 * msgpack.js: the MessagePack encoding of `ferrows serve` (subprotocol
 * `ferrows.msgpack`, see docs/protocol.md) for ferrows.js. Optional: the
 * client speaks JSON without it.
 *
 *   import { Client } from "./ferrows.js";
 *   import { msgpack } from "./msgpack.js";
 *   const client = new Client(url, { codec: msgpack });
 *
 * Messages are the JSON ones, written in MessagePack. Publication data
 * travels as bytes: `pub.data` is a `Uint8Array`. `publish` sends a
 * `Uint8Array` as it is and anything else as the UTF-8 of its JSON text,
 * which JSON subscribers of the channel receive as that value; so do
 * `rpc` and `connect` with their `data` (an RPC's answer, and the connect
 * proxy's `data`, arrive as a `Uint8Array` too).
 *
 * One ES module, no dependencies: the subset of MessagePack the protocol
 * uses (nil, booleans, integers, floats, strings, binary, arrays, maps).
 *
 * @module ferrows/msgpack
 */

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Bytes as a `Uint8Array`, for the byte-sized views and buffers (null for anything else). */
function bytesOf(value) {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value) && value.BYTES_PER_ELEMENT === 1) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return null;
}

/** Encodes a value as MessagePack. @param {*} value @returns {Uint8Array} */
export function encode(value) {
  const out = new Writer();
  out.value(value, 0);
  return out.bytes();
}

/** Decodes one MessagePack value (the whole input).
 * @param {ArrayBuffer|Uint8Array} data @returns {*} */
export function decode(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const reader = new Reader(bytes);
  const value = reader.value(0);
  if (reader.at !== bytes.length) throw new Error("msgpack: bytes after the value");
  return value;
}

/** The codec ferrows.js takes as its `codec` option. */
export const msgpack = {
  subprotocol: "ferrows.msgpack",
  binary: true,
  /** A command as a WebSocket message. */
  encode(command) {
    for (const method of ["publish", "rpc", "connect"]) {
      const args = command[method];
      if (!args || !("data" in args)) continue;
      if (args.data === undefined) throw new TypeError(`${method}: data is undefined`);
      const bytes = bytesOf(args.data) ?? utf8.encode(JSON.stringify(args.data));
      command = { ...command, [method]: { ...args, data: bytes } };
    }
    return encode(command);
  },
  /** A server message from a WebSocket message's data. */
  decode(data) {
    if (typeof data === "string") throw new Error("msgpack: a text message");
    return decode(data);
  },
};

const MAX_DEPTH = 64;

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.at = 0;
  }

  bytes() {
    return this.buf.subarray(0, this.at);
  }

  reserve(n) {
    if (this.at + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    grown.set(this.buf.subarray(0, this.at));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(b) { this.reserve(1); this.buf[this.at++] = b; }
  u16(n) { this.reserve(2); this.view.setUint16(this.at, n); this.at += 2; }
  u32(n) { this.reserve(4); this.view.setUint32(this.at, n); this.at += 4; }
  raw(bytes) { this.reserve(bytes.length); this.buf.set(bytes, this.at); this.at += bytes.length; }

  /** A length with the fixed form (when `fix` is given), then 8, 16 and 32 bits. */
  head(len, fix, fixMax, c8, c16, c32) {
    if (fix !== null && len <= fixMax) this.u8(fix | len);
    else if (c8 !== null && len < 0x100) { this.u8(c8); this.u8(len); }
    else if (len < 0x10000) { this.u8(c16); this.u16(len); }
    else { this.u8(c32); this.u32(len); }
  }

  value(v, depth) {
    if (depth > MAX_DEPTH) throw new Error("msgpack: nested too deep");
    if (v === null || v === undefined) return this.u8(0xc0);
    if (v === false) return this.u8(0xc2);
    if (v === true) return this.u8(0xc3);
    if (typeof v === "number") return this.number(v);
    if (typeof v === "bigint") return this.bigint(v);
    if (typeof v === "string") {
      const bytes = utf8.encode(v);
      this.head(bytes.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
      return this.raw(bytes);
    }
    const bytes = bytesOf(v);
    if (bytes) {
      this.head(bytes.length, null, 0, 0xc4, 0xc5, 0xc6);
      return this.raw(bytes);
    }
    if (Array.isArray(v)) {
      this.head(v.length, 0x90, 15, null, 0xdc, 0xdd);
      for (const item of v) this.value(item, depth + 1);
      return;
    }
    if (typeof v.toJSON === "function") return this.value(v.toJSON(), depth + 1);
    const entries = Object.entries(v).filter(([, item]) => item !== undefined);
    this.head(entries.length, 0x80, 15, null, 0xde, 0xdf);
    for (const [key, item] of entries) {
      this.value(key, depth + 1);
      this.value(item, depth + 1);
    }
  }

  number(n) {
    if (!Number.isInteger(n) || !Number.isSafeInteger(n)) {
      this.u8(0xcb);
      this.reserve(8);
      this.view.setFloat64(this.at, n);
      this.at += 8;
      return;
    }
    if (n >= 0) {
      if (n < 0x80) return this.u8(n);
      if (n < 0x100) { this.u8(0xcc); return this.u8(n); }
      if (n < 0x10000) { this.u8(0xcd); return this.u16(n); }
      if (n < 0x100000000) { this.u8(0xce); return this.u32(n); }
      return this.bigint(BigInt(n));
    }
    if (n >= -32) return this.u8(n & 0xff);
    if (n >= -0x80) { this.u8(0xd0); this.reserve(1); this.view.setInt8(this.at++, n); return; }
    if (n >= -0x8000) { this.u8(0xd1); this.reserve(2); this.view.setInt16(this.at, n); this.at += 2; return; }
    if (n >= -0x80000000) { this.u8(0xd2); this.reserve(4); this.view.setInt32(this.at, n); this.at += 4; return; }
    return this.bigint(BigInt(n));
  }

  bigint(n) {
    this.reserve(9);
    if (n >= 0n) { this.u8(0xcf); this.view.setBigUint64(this.at, n); } else { this.u8(0xd3); this.view.setBigInt64(this.at, n); }
    this.at += 8;
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  need(n) {
    if (this.at + n > this.bytes.length) throw new Error("msgpack: truncated");
  }

  u8() { this.need(1); return this.bytes[this.at++]; }
  take(n, read) { this.need(n); const v = read(this.at); this.at += n; return v; }
  u16() { return this.take(2, (at) => this.view.getUint16(at)); }
  u32() { return this.take(4, (at) => this.view.getUint32(at)); }

  slice(n) {
    this.need(n);
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }

  str(n) { this.need(n); const s = fromUtf8.decode(this.bytes.subarray(this.at, this.at + n)); this.at += n; return s; }

  /** 64-bit integers: a number when it is exact, a BigInt otherwise. */
  int64(signed) {
    const v = this.take(8, (at) => (signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at)));
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  array(n, depth) {
    // Each item takes a byte at least: a length beyond the input is a lie.
    this.need(n);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    this.need(n * 2);
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") throw new Error("msgpack: a map key that is not a string");
      const value = this.value(depth + 1);
      Object.defineProperty(out, String(key), { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new Error("msgpack: nested too deep");
    const b = this.u8();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0x80 && b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b >= 0x90 && b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b >= 0xa0 && b <= 0xbf) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.slice(this.u8());
      case 0xc5: return this.slice(this.u16());
      case 0xc6: return this.slice(this.u32());
      case 0xca: return this.take(4, (at) => this.view.getFloat32(at));
      case 0xcb: return this.take(8, (at) => this.view.getFloat64(at));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.int64(false);
      case 0xd0: return this.take(1, (at) => this.view.getInt8(at));
      case 0xd1: return this.take(2, (at) => this.view.getInt16(at));
      case 0xd2: return this.take(4, (at) => this.view.getInt32(at));
      case 0xd3: return this.int64(true);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new Error(`msgpack: unsupported type 0x${b.toString(16)}`);
    }
  }
}
