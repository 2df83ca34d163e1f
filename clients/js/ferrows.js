/**
 * ferrows.js: a client for `ferrows serve` (see docs/protocol.md).
 *
 * One ES module, no dependencies. Works in browsers and in Node (pass a
 * WebSocket constructor in the options when there is no global one).
 * Speaks JSON; `msgpack.js` adds the MessagePack encoding (`codec` option).
 *
 *   import { Client } from "./ferrows.js";
 *   const client = new Client("ws://127.0.0.1:8000/ws", { name: "alice" });
 *   client.connect();
 *   const sub = client.subscribe("chat:lobby", { onPublication(pub) { console.log(pub.data); } });
 *   await client.publish("chat:lobby", { text: "hi" });
 *
 * @module ferrows
 */

/** Close codes after which reconnecting cannot help (the client must change). */
const FATAL_CLOSE_CODES = new Set([1009, 4000, 4001]);

/** An error of a command: `code` is the server's error code (100-110, see
 * docs/protocol.md) or, for errors found by the client, `"timeout"`,
 * `"disconnected"` (the connection went away before the reply) or
 * `"closed"` (a close code that stops the client; `closeCode` says which).
 * `temporary`: the server says the same command may succeed later. */
export class FerrowsError extends Error {
  /** @param {number|string} code @param {string} message @param {boolean} [temporary] */
  constructor(code, message, temporary = false) {
    super(message);
    this.name = "FerrowsError";
    /** @type {number|string} */
    this.code = code;
    /** @type {boolean} */
    this.temporary = temporary;
  }
}

/** Errors worth retrying (after a delay): what the server calls temporary
 * (its broker unreachable, commands over its rate), and timeouts. */
const isTransient = (err) => err.temporary || err.code === 100 || err.code === 110 || err.code === "timeout";

/** The JSON encoding (the default `codec`): text messages. */
const json = {
  subprotocol: null,
  binary: false,
  encode: (command) => JSON.stringify(command),
  decode: (data) => JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data)),
};

/** A publication as handlers see it: data that is not JSON (published by a
 * MessagePack client) arrives in JSON as `data_base64`, and is given as a
 * `Uint8Array`. */
function publication(pub) {
  if (pub.data_base64 === undefined) return pub;
  const { data_base64: b64, ...rest } = pub;
  const text = atob(b64);
  const data = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) data[i] = text.charCodeAt(i);
  return { ...rest, data };
}

/**
 * @typedef {object} ClientOptions
 * @property {string|(() => string|Promise<string>)} [token] a JWT, or a function returning one (called before every connection attempt)
 * @property {string} [name] display name sent with `connect`
 * @property {typeof WebSocket} [WebSocket] WebSocket constructor (default `globalThis.WebSocket`)
 * @property {number} [timeout=10000] ms before a command (and the opening of a connection) fails with code "timeout"
 * @property {number} [minReconnectDelay=250] ms, base of the exponential backoff
 * @property {number} [maxReconnectDelay=10000] ms, cap of the backoff
 * @property {number} [pingInterval] ms between `ping` commands that detect dead connections; default: the `ping` the server announces; 0 disables
 * @property {{subprotocol: string|null, binary: boolean, encode: Function, decode: Function}} [codec] the encoding (default JSON; `msgpack` from `msgpack.js`)
 */

/**
 * @typedef {object} Publication
 * @property {number} [offset] position in the channel
 * @property {*} data what was published
 * @property {{client: string, user: string, name: string}} [info] who published (absent for the server API)
 */

/**
 * @typedef {object} SubscriptionHandlers
 * @property {(pub: Publication) => void} [onPublication] every publication, in order, each once
 * @property {(info: {client: string, user: string, name: string}) => void} [onJoin] a client joined (namespaces with join/leave events)
 * @property {(info: {client: string, user: string, name: string}) => void} [onLeave] a client left
 * @property {(r: {recovered: boolean, missed: number}) => void} [onRecovery] after a resubscription, or when the server's history was lost while connected (a `reset` push): `recovered` false means publications were lost (reload state, e.g. with `history`)
 * @property {(r: {position: {offset: number, epoch: string}}) => void} [onSubscribed] every successful (re)subscription
 * @property {(err: FerrowsError) => void} [onError] the subscription failed for good (it is then removed)
 */

/**
 * A pub/sub client over one WebSocket, with reconnection and recovery.
 *
 * Events (`client.on(name, fn)`):
 * - `state` `(state, detail)`: `"connecting"`, `"connected"` or `"disconnected"`;
 *   for `"disconnected"`, detail is `{code, reason, reconnect, delay}`
 *   (`reconnect`: another attempt is scheduled in `delay` ms).
 * - `connected` `({client, user, ping})`: the `connect` result.
 * - `error` `(FerrowsError)`: the client stopped for good (close code 1009,
 *   4000, 4001, a rejected `connect`, a bad URL).
 */
export class Client {
  /**
   * @param {string|string[]} url e.g. `ws://127.0.0.1:8000/ws`, or several
   *   servers of one service (nodes on one Redis): the client starts with the
   *   first and moves to the next one each time a connection is lost or
   *   cannot be opened (give clients the list in different orders to spread
   *   them over the nodes)
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    /** The servers, in the order they are tried. */
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new FerrowsError("closed", "no server URL");
    /** The server of the current (or next) connection. */
    this.url = this.urls[0];
    this._urlIndex = 0;
    this._badUrls = new Set(); // URLs the WebSocket constructor refused
    this.options = { timeout: 10000, minReconnectDelay: 250, maxReconnectDelay: 10000, codec: json, ...options };
    /** @type {"connecting"|"connected"|"disconnected"} */
    this.state = "disconnected";
    /** The id the server gave this connection, and the user of the token. */
    this.clientId = null;
    this.user = null;
    this._ws = null;
    this._wanted = false; // connect() was called, disconnect() was not
    this._attempt = 0;
    this._opening = 0;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._queue = []; // commands waiting for the connection: {message, entry}
    this._subs = new Map(); // channel -> Subscription
    this._listeners = new Map();
    this._timers = { reconnect: null, open: null, ping: null };
  }

  /** Adds a listener; returns a function that removes it.
   * @param {"state"|"connected"|"error"} event @param {Function} fn @returns {() => void} */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Removes a listener. @param {string} event @param {Function} fn */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try { fn(...args); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit("state", state, detail);
  }

  /** Opens the connection (and keeps it open until `disconnect`). Subscriptions
   * made before or kept across `disconnect` are (re)sent once connected. */
  connect() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempt = 0;
    this._open();
  }

  /** Closes the connection and stops reconnecting. Subscriptions are kept and
   * recover from their last position on the next `connect`; commands not
   * answered yet are rejected with code "disconnected". */
  disconnect() {
    this._wanted = false;
    const ws = this._ws;
    this._lost(1000, "disconnect", false);
    if (ws) ws.close(1000);
    for (const { entry } of this._queue.splice(0)) this._settle(entry, new FerrowsError("disconnected", "disconnected"));
  }

  async _open() {
    const attempt = ++this._opening;
    this._setState("connecting");
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (e) {
      if (attempt === this._opening && this._wanted) this._lost(0, `token: ${e?.message ?? e}`, true);
      return;
    }
    if (attempt !== this._opening || !this._wanted || this._ws) return;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      const { subprotocol, binary } = this.options.codec;
      ws = subprotocol ? new WS(this.url, [subprotocol]) : new WS(this.url);
      if (binary) ws.binaryType = "arraybuffer";
    } catch (e) {
      // A URL the constructor refuses (malformed) stays bad: the next one,
      // unless none is left.
      this._badUrls.add(this.url);
      if (this._badUrls.size >= new Set(this.urls).size) {
        return this._fail(new FerrowsError("closed", `cannot open ${this.url}: ${e?.message ?? e}`));
      }
      this._nextUrl();
      return this._open();
    }
    this._ws = ws;
    this._timers.open = setTimeout(() => this._drop("connect timeout"), this.options.timeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      const { subprotocol } = this.options.codec;
      if (subprotocol && ws.protocol !== subprotocol) {
        return this._fail(new FerrowsError("closed", `the server does not speak ${subprotocol}`));
      }
      const connect = {};
      if (token) connect.token = token;
      if (this.options.name) connect.name = this.options.name;
      this._send({ connect }, this._entry()).then(
        (result) => this._onConnected(ws, result),
        (err) => {
          if (this._ws !== ws || err.code === "disconnected") return;
          if (isTransient(err)) this._drop(err.message);
          else this._fail(err);
        },
      );
    };
    ws.onmessage = (event) => { if (this._ws === ws) this._onMessage(event.data); };
    ws.onclose = (event) => { if (this._ws === ws) this._lost(event.code, event.reason, true); };
    // Browsers follow an error with a close event; Node 20's client may not
    // (connection refused): either way the connection is lost.
    ws.onerror = () => { if (this._ws === ws) this._drop("connection error"); };
  }

  _onConnected(ws, result) {
    if (this._ws !== ws) return;
    clearTimeout(this._timers.open);
    this._attempt = 0;
    this.clientId = result.client;
    this.user = result.user;
    this._setState("connected");
    this._emit("connected", result);
    const interval = this.options.pingInterval ?? (result.ping > 0 ? result.ping * 1000 : 0);
    if (interval > 0) this._schedulePing(ws, interval);
    for (const sub of this._subs.values()) sub._subscribe();
    for (const { message, entry } of this._queue.splice(0)) this._send(message, entry);
  }

  _schedulePing(ws, interval) {
    this._timers.ping = setTimeout(() => {
      this._command({ ping: {} }).then(
        () => { if (this._ws === ws) this._schedulePing(ws, interval); },
        (err) => { if (this._ws === ws && err.code === "timeout") this._drop("ping timeout"); },
      );
    }, interval);
  }

  /** Drops the socket without a close handshake and reconnects (used on
   * timeouts; tests use it to simulate a network failure). */
  _drop(reason = "dropped") {
    const ws = this._ws;
    if (!ws) return;
    this._lost(1006, reason, true);
    try { ws.close(); } catch { /* already closing */ }
  }

  /** The connection is gone: clean up, then reconnect, stop or stay down. */
  _lost(code, reason, unexpected) {
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    const wasWaiting = this._timers.reconnect !== null;
    for (const name of Object.keys(this._timers)) { clearTimeout(this._timers[name]); this._timers[name] = null; }
    for (const entry of [...this._pending.values()]) this._settle(entry, new FerrowsError("disconnected", "connection lost"));
    for (const sub of this._subs.values()) sub._connectionLost();
    this.clientId = null;
    if (unexpected && FATAL_CLOSE_CODES.has(code)) {
      const err = new FerrowsError("closed", `closed by the server: ${code} ${reason}`);
      err.closeCode = code;
      return this._fail(err, { code, reason });
    }
    if (!unexpected || !this._wanted) {
      if (this.state !== "disconnected" || wasWaiting) this._setState("disconnected", { code, reason, reconnect: false, delay: 0 });
      return;
    }
    // The next server, if there are several: this one was lost or is down.
    this._nextUrl();
    const { minReconnectDelay: min, maxReconnectDelay: max } = this.options;
    // Full jitter; with several servers the backoff grows once per round.
    const round = Math.floor(this._attempt / this.urls.length);
    const delay = Math.round(Math.random() * Math.min(max, min * 2 ** round));
    this._attempt += 1;
    this._setState("disconnected", { code, reason, reconnect: true, delay, attempt: this._attempt });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (this._wanted && !this._ws) this._open();
    }, delay);
  }

  /** Moves to the next server of the list that is not known to be bad. */
  _nextUrl() {
    for (let k = 0; k < this.urls.length; k++) {
      this._urlIndex = (this._urlIndex + 1) % this.urls.length;
      if (!this._badUrls.has(this.urls[this._urlIndex])) break;
    }
    this.url = this.urls[this._urlIndex];
  }

  /** Stops for good with an error. */
  _fail(err, detail = { code: 0, reason: err.message }) {
    const wasWanted = this._wanted;
    this._wanted = false;
    const ws = this._ws;
    this._lost(detail.code, detail.reason, false);
    if (ws) try { ws.close(); } catch { /* already closing */ }
    if (this.state !== "disconnected") this._setState("disconnected", { ...detail, reconnect: false, delay: 0 });
    for (const { entry } of this._queue.splice(0)) this._settle(entry, err);
    if (wasWanted) this._emit("error", err);
  }

  _onMessage(data) {
    let msg;
    try { msg = this.options.codec.decode(data); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.push) {
      this._subs.get(msg.push.channel)?._onPush(msg.push);
    } else if (msg.id !== undefined) {
      const entry = this._pending.get(msg.id);
      if (!entry) return;
      const { error } = msg;
      if (error) this._settle(entry, new FerrowsError(error.code, error.message ?? `error ${error.code}`, error.temporary === true));
      else this._settle(entry, null, msg.result ?? {});
    }
  }

  /** A pending command: its promise, and a timer that rejects it. */
  _entry() {
    const entry = { id: 0 };
    entry.promise = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
    entry.timer = setTimeout(() => {
      this._queue = this._queue.filter((q) => q.entry !== entry);
      this._settle(entry, new FerrowsError("timeout", "no reply in time"));
    }, this.options.timeout);
    return entry;
  }

  _settle(entry, err, result) {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    this._pending.delete(entry.id);
    if (err) entry.reject(err); else entry.resolve(result);
  }

  _send(message, entry) {
    entry.id = this._nextId++;
    this._pending.set(entry.id, entry);
    try {
      this._ws.send(this.options.codec.encode({ id: entry.id, ...message }));
    } catch (e) {
      this._settle(entry, new FerrowsError("disconnected", `send failed: ${e?.message ?? e}`));
    }
    return entry.promise;
  }

  /** Sends a command now if connected, after (re)connecting if not; rejects
   * at once when the client is not meant to be connected. */
  _command(message) {
    if (!this._wanted) return Promise.reject(new FerrowsError("disconnected", "not connected"));
    const entry = this._entry();
    if (this.state === "connected") return this._send(message, entry);
    this._queue.push({ message, entry });
    return entry.promise;
  }

  /**
   * Subscribes to a channel; the subscription lasts across reconnections
   * (each resubscription asks for what was missed) until `unsubscribe`.
   * @param {string} channel @param {SubscriptionHandlers} [handlers] @returns {Subscription}
   */
  subscribe(channel, handlers = {}) {
    if (this._subs.has(channel)) throw new FerrowsError(105, `already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, handlers);
    this._subs.set(channel, sub);
    if (this.state === "connected") sub._subscribe();
    return sub;
  }

  /** The subscription to a channel, if any. @param {string} channel @returns {Subscription|undefined} */
  getSubscription(channel) {
    return this._subs.get(channel);
  }

  /** Publishes into a channel. @param {string} channel @param {*} data any JSON value
   * (with the MessagePack codec also a `Uint8Array`, sent as bytes)
   * @returns {Promise<{offset: number, epoch: string}>} */
  publish(channel, data) {
    return this._command({ publish: { channel, data } });
  }

  /** Who is subscribed to a channel. @param {string} channel
   * @returns {Promise<Object<string, {user: string, name: string}>>} client id -> info */
  async presence(channel) {
    return (await this._command({ presence: { channel } })).clients ?? {};
  }

  /** The latest publications of a channel, oldest first. @param {string} channel @param {number} [limit]
   * @returns {Promise<{position: {offset: number, epoch: string}, publications: Publication[]}>} */
  async history(channel, limit) {
    const result = await this._command({ history: limit === undefined ? { channel } : { channel, limit } });
    return { position: result.position, publications: (result.publications ?? []).map(publication) };
  }

  /** Round trip to the server. @returns {Promise<void>} */
  async ping() {
    await this._command({ ping: {} });
  }
}

/** A subscription to one channel (made by `Client.subscribe`). */
export class Subscription {
  constructor(client, channel, handlers) {
    this.client = client;
    /** @type {string} */
    this.channel = channel;
    /** @type {"subscribing"|"subscribed"|"unsubscribed"} */
    this.state = "subscribing";
    /** The last position seen, sent as `since` when resubscribing. @type {{offset: number, epoch: string}|null} */
    this.position = null;
    this._handlers = handlers;
    this._buffer = null; // pushes that arrive while the subscribe reply is awaited
    this._gen = 0;
    this._retry = null;
    /** Resolves with the first `subscribe` result; rejects if the subscription fails for good.
     * @type {Promise<{position: {offset: number, epoch: string}}>} */
    this.ready = new Promise((resolve, reject) => { this._ready = { resolve, reject }; });
    this.ready.catch(() => {}); // awaiting it is optional
  }

  _call(name, ...args) {
    try { this._handlers[name]?.(...args); } catch (e) { setTimeout(() => { throw e; }); }
  }

  _subscribe() {
    if (this.state === "unsubscribed") return;
    clearTimeout(this._retry);
    this.state = "subscribing";
    this._buffer = [];
    const gen = ++this._gen;
    const since = this.position && this.position.offset !== undefined ? { ...this.position } : null;
    const args = since ? { channel: this.channel, since } : { channel: this.channel };
    this.client._command({ subscribe: args }).then(
      (result) => { if (gen === this._gen) this._onSubscribed(result, since); },
      (err) => { if (gen === this._gen) this._onError(err); },
    );
  }

  _onSubscribed(result, since) {
    const buffered = this._buffer ?? [];
    this._buffer = null;
    this.state = "subscribed";
    if (since) {
      const recovered = result.recovered === true && result.position?.epoch === since.epoch;
      const missed = recovered ? (result.publications ?? []).filter((p) => !(p.offset <= since.offset)) : [];
      if (!recovered) this.position = null;
      this._call("onRecovery", { recovered, missed: missed.length });
      for (const pub of missed) this._deliver(publication(pub));
    }
    const position = result.position;
    if (position && (!this.position || this.position.epoch !== position.epoch || this.position.offset < position.offset)) {
      this.position = { offset: position.offset, epoch: position.epoch };
    }
    this._call("onSubscribed", { position: this.position });
    this._ready.resolve(result);
    for (const push of buffered) this._onStream(push);
  }

  _onError(err) {
    if (err.code === "disconnected") return; // resubscribed on reconnect
    if (isTransient(err)) { // retried now if connected, else on reconnect
      if (this.client.state === "connected") {
        this._retry = setTimeout(() => this._subscribe(), this.client.options.minReconnectDelay * (1 + Math.random()));
      }
      return;
    }
    this.state = "unsubscribed";
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
    this._ready.reject(err);
    this._call("onError", err);
  }

  _connectionLost() {
    clearTimeout(this._retry);
    this._gen += 1;
    if (this.state !== "unsubscribed") this.state = "subscribing";
    this._buffer = null;
  }

  _onPush(push) {
    if (push.pub || push.reset) {
      // Held, in order, until the subscribe reply is handled.
      if (this._buffer) this._buffer.push(push);
      else if (this.state === "subscribed") this._onStream(push);
    } else if (push.join) this._call("onJoin", push.join);
    else if (push.leave) this._call("onLeave", push.leave);
  }

  /** A publication, or a `reset`: the server's history was lost (e.g. its
   * Redis restarted) and the stream goes on from a new position. */
  _onStream(push) {
    if (push.pub) return this._deliver(publication(push.pub));
    const p = push.reset.position;
    this.position = p ? { offset: p.offset, epoch: p.epoch } : null;
    this._call("onRecovery", { recovered: false, missed: 0 });
  }

  /** Delivers a publication unless it was already seen (offset <= last). */
  _deliver(pub) {
    if (typeof pub.offset === "number" && this.position) {
      if (pub.offset <= this.position.offset) return;
      this.position.offset = pub.offset;
    }
    this._call("onPublication", pub);
  }

  /** Leaves the channel (for good). @returns {Promise<void>} */
  async unsubscribe() {
    if (this.state === "unsubscribed") return;
    const wasActive = this.client.state === "connected";
    this.state = "unsubscribed";
    this._gen += 1;
    clearTimeout(this._retry);
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
    this._ready.reject(new FerrowsError("disconnected", "unsubscribed"));
    if (wasActive) {
      try { await this.client._command({ unsubscribe: { channel: this.channel } }); } catch { /* gone anyway */ }
    }
  }
}
