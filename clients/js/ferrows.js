/**
 * ferrows.js: a client for `ferrows serve` (see docs/protocol.md).
 *
 * One ES module, no dependencies. Works in browsers and in Node (pass a
 * WebSocket or EventSource constructor in the options when there is no
 * global one). Speaks JSON; `msgpack.js` adds the MessagePack encoding
 * (`codec` option, WebSocket only).
 *
 * One API over every transport: a WebSocket where it can open one; where it
 * cannot (a proxy that strips `Upgrade`), Server-Sent Events with HTTP
 * publishing; where those stay silent too (a proxy that buffers
 * responses), HTTP long polling. The `transport` option forces one.
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

/** The transports, in the order `transport: "auto"` tries them. */
const TRANSPORTS = ["websocket", "sse", "longpoll"];

/** A connection that stayed up this long (ms) resets the reconnection
 * backoff: one that connects and fails at once keeps backing off. */
const STABLE_MS = 5000;

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
 * @property {*} [data] sent with `connect` for the server's connect proxy (the application's backend authenticates the client with it): any JSON value (with the MessagePack codec also a `Uint8Array`)
 * @property {typeof WebSocket} [WebSocket] WebSocket constructor (default `globalThis.WebSocket`)
 * @property {number} [timeout=10000] ms before a command (and the opening of a connection) fails with code "timeout"
 * @property {number} [minReconnectDelay=250] ms, base of the exponential backoff
 * @property {number} [maxReconnectDelay=10000] ms, cap of the backoff
 * @property {number} [pingInterval] ms between `ping` commands that detect dead connections; default: the `ping` the server announces; 0 disables
 * @property {{subprotocol: string|null, binary: boolean, encode: Function, decode: Function}} [codec] the encoding (default JSON; `msgpack` from `msgpack.js`; the HTTP transports speak JSON)
 * @property {"auto"|"websocket"|"sse"|"longpoll"} [transport="auto"] `auto` tries a WebSocket, then Server-Sent Events, then long polling, moving to the next one when a connection cannot be opened (within `timeout`), and back to the first after a round that failed; any other value uses that transport only
 * @property {string} [httpUrl] base URL of the HTTP transports (default: the server URL with `http(s)` and without its last path segment: `ws://h/ws` gives `http://h`)
 * @property {typeof EventSource} [EventSource] EventSource constructor (default `globalThis.EventSource`)
 * @property {number} [longPollTimeout=25] seconds a long poll waits for news (at most the server's `max_long_poll`)
 * @property {number} [upgradeInterval=30000] ms between attempts to open a WebSocket again while `auto` runs over a fallback transport (the network may have changed); 0 disables
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
 * @property {() => void} [onUnsubscribed] the server ended the subscription (the server API unsubscribed the user; it is then removed)
 */

/**
 * A pub/sub client over one WebSocket, with reconnection and recovery.
 *
 * Events (`client.on(name, fn)`):
 * - `state` `(state, detail)`: `"connecting"`, `"connected"` or `"disconnected"`;
 *   for `"connecting"` and `"connected"`, detail is `{transport}`; for
 *   `"disconnected"`, `{code, reason, reconnect, delay}` (`reconnect`: another
 *   attempt is scheduled in `delay` ms; `fallback`: the transport it tries
 *   next, when the one that failed never connected).
 * - `connected` `({client, user, ping, transport})`: who the server says the
 *   client is (`client` and `user` are null over long polling, which has no
 *   connection), and over which transport.
 * - `error` `(FerrowsError)`: the client stopped for good (close code 1009,
 *   4000, 4001, a rejected `connect`, a bad URL).
 * - Server-side subscriptions (channels the server subscribes the client to:
 *   its token's `subs`, the connect proxy's, the server API's; WebSocket
 *   only), recovered across reconnections like the client's own:
 *   `subscribed` `(channel, {position, recovered, missed})` at each
 *   (re)subscription (`recovered` false: publications were lost),
 *   `publication` `(channel, Publication)` each once, in order, and
 *   `unsubscribed` `(channel)` when the server ends one.
 * - Credentials that expire (the `connect` result's `expires`) are refreshed
 *   a tenth of their life before, with a token from the `token` function
 *   (a fixed token cannot be refreshed: the server closes with 4007 and the
 *   client reconnects).
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
    this.options = {
      timeout: 10000, minReconnectDelay: 250, maxReconnectDelay: 10000, codec: json,
      transport: "auto", longPollTimeout: 25, upgradeInterval: 30000, ...options,
    };
    const transport = this.options.transport;
    if (transport !== "auto" && !TRANSPORTS.includes(transport)) throw new FerrowsError("closed", `unknown transport ${transport}`);
    /** The transports it uses, in order. */
    this._chain = transport === "auto" ? TRANSPORTS : [transport];
    this._chainIndex = 0;
    /** The transport of the current (or next) connection: "websocket", "sse" or "longpoll". */
    this.transport = this._chain[0];
    this._link = null; // the connection of an HTTP transport (StreamLink, PollLink)
    this._reached = false; // the current attempt connected
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
    this._serverSubs = new Map(); // channel -> Subscription (server-side)
    this._listeners = new Map();
    this._timers = { reconnect: null, open: null, ping: null, stable: null, probe: null, refresh: null };
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
    this.transport = this._chain[this._chainIndex];
    this._reached = false;
    this._setState("connecting", { transport: this.transport });
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (e) {
      // Not the transport's fault: no fallback for it.
      if (attempt === this._opening && this._wanted) this._lost(0, `token: ${e?.message ?? e}`, true, false);
      return;
    }
    if (attempt !== this._opening || !this._wanted || this._ws || this._link) return;
    if (this.transport !== "websocket") {
      let base;
      try {
        base = httpBase(this.url, this.options.httpUrl);
      } catch (e) {
        return this._fail(new FerrowsError("closed", `no HTTP URL for ${this.url}: ${e?.message ?? e}`));
      }
      const Link = this.transport === "sse" ? StreamLink : PollLink;
      this._link = new Link(this, base, token);
      this._timers.open = setTimeout(() => this._drop("connect timeout"), this.options.timeout);
      this._link.open();
      return;
    }
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
      if (this.options.data !== undefined) connect.data = this.options.data;
      const subs = {};
      for (const [channel, sub] of this._serverSubs) if (sub.position) subs[channel] = { ...sub.position };
      if (Object.keys(subs).length > 0) connect.subs = subs;
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
    this._connected(result);
    const interval = this.options.pingInterval ?? (result.ping > 0 ? result.ping * 1000 : 0);
    if (interval > 0) this._schedulePing(ws, interval);
    if (typeof result.expires === "number") this._scheduleRefresh(ws, result.expires);
    for (const sub of this._subs.values()) sub._subscribe();
    for (const { message, entry } of this._queue.splice(0)) this._send(message, entry);
  }

  /** An HTTP transport's connection is up (its subscriptions are its own). */
  _linkConnected(link, result) {
    if (this._link !== link) return;
    this._connected(result);
    for (const { message, entry } of this._queue.splice(0)) this._send(message, entry);
    const interval = this.options.upgradeInterval;
    if (this._chain[0] === "websocket" && this._chainIndex !== 0 && interval > 0) {
      this._timers.probe = setTimeout(() => this._probe(link), interval);
    }
  }

  /** Over a fallback transport: tries to open a WebSocket (and closes it at
   * once); where it opens, the client moves back to it. */
  _probe(link) {
    this._timers.probe = null;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (this._link !== link || typeof WS !== "function") return;
    let ws;
    try {
      const { subprotocol } = this.options.codec;
      ws = subprotocol ? new WS(this.url, [subprotocol]) : new WS(this.url);
    } catch { return; }
    const settle = (opened) => {
      ws.onopen = ws.onerror = ws.onclose = null;
      try { ws.close(1000); } catch { /* closing */ }
      if (this._link !== link) return;
      if (opened) this._upgrade();
      else this._timers.probe = setTimeout(() => this._probe(link), this.options.upgradeInterval);
    };
    ws.onopen = () => settle(true);
    ws.onerror = ws.onclose = () => settle(false);
  }

  /** Leaves the HTTP transport for a WebSocket, the subscriptions
   * recovering on the way (commands in flight finish on their own). */
  _upgrade() {
    const link = this._link;
    this._link = null;
    link.close();
    for (const name of Object.keys(this._timers)) { clearTimeout(this._timers[name]); this._timers[name] = null; }
    for (const sub of this._subs.values()) sub._connectionLost();
    this._chainIndex = 0;
    this._setState("disconnected", { code: 1000, reason: "a WebSocket opens again", reconnect: true, delay: 0 });
    this._open();
  }

  _connected(result) {
    clearTimeout(this._timers.open);
    this._timers.stable = setTimeout(() => { this._attempt = 0; }, STABLE_MS);
    this._reached = true;
    this.clientId = result.client ?? null;
    this.user = result.user ?? null;
    this._setState("connected", { transport: this.transport });
    this._emit("connected", { ...result, transport: this.transport });
  }

  /** Refreshes the connection's credentials a tenth of their life before they
   * expire (`expires` seconds from now), with a fresh token. */
  _scheduleRefresh(ws, expires) {
    if (typeof this.options.token !== "function") return;
    const lead = Math.max(1, expires / 10);
    this._timers.refresh = setTimeout(async () => {
      let token;
      try { token = await this.options.token(); } catch { return; } // closed at expiry (4007), then reconnected
      if (this._ws !== ws) return;
      this._command({ refresh: { token } }).then(
        (result) => { if (this._ws === ws && typeof result.expires === "number") this._scheduleRefresh(ws, result.expires); },
        () => { /* closed at expiry (4007), then reconnected */ },
      );
    }, Math.max(0, expires - lead) * 1000);
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
    if (!ws && !this._link) return;
    this._lost(1006, reason, true);
    if (ws) try { ws.close(); } catch { /* already closing */ }
  }

  /** The connection is gone: clean up, then reconnect, stop or stay down.
   * `transportFault`: whether the transport itself failed (a fallback may
   * help), not the token or the server's answer. */
  _lost(code, reason, unexpected, transportFault = true) {
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    const link = this._link;
    this._link = null;
    link?.close();
    const wasWaiting = this._timers.reconnect !== null;
    for (const name of Object.keys(this._timers)) { clearTimeout(this._timers[name]); this._timers[name] = null; }
    for (const entry of [...this._pending.values()]) this._settle(entry, new FerrowsError("disconnected", "connection lost"));
    for (const sub of this._subs.values()) sub._connectionLost();
    for (const sub of this._serverSubs.values()) sub._connectionLost();
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
    // A transport that could not connect: the next one, at once, until a
    // round of them failed.
    if (!this._reached && transportFault && this._chain.length > 1) {
      this._chainIndex = (this._chainIndex + 1) % this._chain.length;
      if (this._chainIndex !== 0) {
        const fallback = this._chain[this._chainIndex];
        this._setState("disconnected", { code, reason, reconnect: true, delay: 0, fallback });
        this._timers.reconnect = setTimeout(() => {
          this._timers.reconnect = null;
          if (this._wanted && !this._ws && !this._link) this._open();
        }, 0);
        return;
      }
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
      if (this._wanted && !this._ws && !this._link) this._open();
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
      this._onPush(msg.push);
    } else if (msg.id !== undefined) {
      const entry = this._pending.get(msg.id);
      if (!entry) return;
      const { error } = msg;
      if (error) this._settle(entry, new FerrowsError(error.code, error.message ?? `error ${error.code}`, error.temporary === true));
      else this._settle(entry, null, msg.result ?? {});
    }
  }

  _onPush(push) {
    const { channel } = push;
    if (push.subscribe) {
      if (this._subs.has(channel)) return;
      let sub = this._serverSubs.get(channel);
      if (!sub) {
        sub = new Subscription(this, channel, {
          onPublication: (pub) => this._emit("publication", channel, pub),
          onRecovery: (r) => { sub._recovery = r; },
          onSubscribed: ({ position }) => {
            const r = sub._recovery ?? { recovered: true, missed: 0 };
            sub._recovery = null;
            this._emit("subscribed", channel, { position, ...r });
          },
        });
        this._serverSubs.set(channel, sub);
      }
      const since = sub.position ? { ...sub.position } : null;
      sub._onSubscribed(push.subscribe, since);
    } else if (push.unsubscribe) {
      const server = this._serverSubs.get(channel);
      if (server) {
        this._serverSubs.delete(channel);
        server.state = "unsubscribed";
        this._emit("unsubscribed", channel);
        return;
      }
      this._subs.get(channel)?._onUnsubscribed();
    } else {
      (this._subs.get(channel) ?? this._serverSubs.get(channel))?._onPush(push);
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
    if (this._link) {
      this._link.command(message).then((result) => this._settle(entry, null, result), (err) => this._settle(entry, err));
      return entry.promise;
    }
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
    // Over an HTTP transport still opening, too: its stream or poll takes
    // the new channel.
    if (this.state === "connected" || this._link) sub._subscribe();
    return sub;
  }

  /** The subscription to a channel, if any. @param {string} channel @returns {Subscription|undefined} */
  getSubscription(channel) {
    return this._subs.get(channel);
  }

  /** Publishes into a channel (over the HTTP transports, with an HTTP request).
   * @param {string} channel @param {*} data any JSON value
   * (with the MessagePack codec also a `Uint8Array`, sent as bytes)
   * @param {{idempotencyKey?: string}} [options] `idempotencyKey` (1 to 64
   * bytes of `[A-Za-z0-9_.:-]`, a UUID say): the publication is made once
   * however often it is sent with this key (within the server's
   * `idempotency_window`): what makes a retry after a lost connection safe
   * @returns {Promise<{offset: number, epoch: string}>} */
  publish(channel, data, options = {}) {
    const publish = { channel, data };
    if (options.idempotencyKey !== undefined) publish.idempotency_key = options.idempotencyKey;
    return this._command({ publish });
  }

  /** Calls a method of the application's backend (the server's RPC proxy;
   * WebSocket only) and resolves with its answer's data.
   * @param {string} method 1 to 64 bytes of `[A-Za-z0-9_.:-]` @param {*} [data]
   * any JSON value (with the MessagePack codec also a `Uint8Array`)
   * @returns {Promise<*>} the backend's data (bytes that are not JSON as a
   * `Uint8Array`); rejects with the backend's error (codes 1000-1999), 111
   * when it did not answer, 104 without an RPC proxy */
  async rpc(method, data = null) {
    if (this._link || (this.state === "connected" && this.transport !== "websocket")) {
      throw new FerrowsError(104, "rpc needs a WebSocket");
    }
    return publication(await this._command({ rpc: { method, data } })).data;
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
    if (this.client._link) {
      // The HTTP transports subscribe with their next request.
      this._buffer = null;
      this.client._link.channelsChanged();
      return;
    }
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

  /** The `subscribed` event of a stream: recovered publications follow as
   * pushes, and move the position as they come. */
  _onStreamSubscribed(event) {
    if (this.state === "unsubscribed") return;
    const since = this._sentSince;
    this._sentSince = null;
    this.state = "subscribed";
    const position = event.position;
    if (since) {
      const recovered = event.recovered === true && position.epoch === since.epoch;
      if (!recovered) this.position = { offset: position.offset, epoch: position.epoch };
      this._call("onRecovery", { recovered, missed: recovered ? Math.max(0, position.offset - since.offset) : 0 });
    } else {
      this.position = { offset: position.offset, epoch: position.epoch };
    }
    this._call("onSubscribed", { position: { offset: position.offset, epoch: position.epoch } });
    this._ready.resolve({ position });
  }

  /** A poll's answer for this channel: the (re)subscription on the first one
   * of a connection, publications or a lost stream later. */
  _onPolled(result) {
    if (this.state === "unsubscribed") return;
    const since = this.position ? { ...this.position } : null;
    const position = result.position;
    const recovered = since !== null && result.recovered === true && position.epoch === since.epoch;
    const news = recovered ? (result.publications ?? []).filter((p) => p.offset > since.offset) : [];
    if (this.state !== "subscribed") {
      this._onSubscribed({ position, recovered, publications: news }, since);
      return;
    }
    if (!recovered) {
      this.position = { offset: position.offset, epoch: position.epoch };
      this._call("onRecovery", { recovered: false, missed: 0 });
      return;
    }
    for (const pub of news) this._deliver(publication(pub));
    if (position.offset > this.position.offset) this.position.offset = position.offset;
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

  /** The server ended the subscription (an `unsubscribe` push). */
  _onUnsubscribed() {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    this._gen += 1;
    clearTimeout(this._retry);
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
    this._ready.reject(new FerrowsError("unsubscribed", "unsubscribed by the server"));
    this._call("onUnsubscribed");
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
    if (this.client._link) {
      this.client._link.channelsChanged();
      return;
    }
    if (wasActive) {
      try { await this.client._command({ unsubscribe: { channel: this.channel } }); } catch { /* gone anyway */ }
    }
  }
}

/** The base URL of the HTTP transports for a WebSocket URL: `ws://h/ws`
 * gives `http://h`, `wss://h/app/ws` gives `https://h/app`. */
function httpBase(url, httpUrl) {
  const base = new URL(httpUrl ?? url);
  if (!httpUrl) {
    base.protocol = base.protocol === "wss:" ? "https:" : base.protocol === "ws:" ? "http:" : base.protocol;
    base.pathname = base.pathname.replace(/\/[^/]*$/, "");
  }
  base.search = "";
  base.hash = "";
  return base.href.replace(/\/$/, "");
}

/** The query of a poll or a stream of `subs`: each channel, with its
 * position (`since`) when `since` and it has one. */
function channelQuery(subs, since) {
  const query = [];
  for (const sub of subs) {
    query.push(`channel=${encodeURIComponent(sub.channel)}`);
    const p = sub.position;
    if (since && p) query.push(`since=${encodeURIComponent(`${sub.channel}:${p.offset}:${p.epoch}`)}`);
  }
  return query;
}

/** The error of an HTTP answer that is not 2xx (`{"error": ...}`). */
async function httpError(res) {
  let error = null;
  try { error = (await res.json())?.error; } catch { /* not JSON */ }
  const code = error?.code ?? res.status;
  const err = new FerrowsError(code, error?.message ?? `HTTP ${res.status}`, error?.temporary === true || res.status >= 500);
  err.status = res.status;
  return err;
}

/** Errors of a poll or stream that name a channel the client may not have:
 * only the subscriptions at fault fail, as a WebSocket `subscribe` would. */
const CHANNEL_ERRORS = new Set([102, 103, 106]);

/** What the HTTP transports share: the subscriptions they carry, the
 * client's HTTP requests, and finding which channels a refused request
 * could not have. */
class HttpLink {
  constructor(client, base, token) {
    this.client = client;
    this.base = base;
    this.token = token;
    this.closed = false;
  }

  /** The subscriptions to carry, in the order made. */
  _subscriptions() {
    return [...this.client._subs.values()].filter((sub) => sub.state !== "unsubscribed");
  }

  _headers(json = false) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (json) headers["Content-Type"] = "application/json";
    return headers;
  }

  /** A request with the client's timeout (`ms`), aborted by `signal` too. */
  async _fetch(url, init = {}, ms = this.client.options.timeout, signal = null) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ms);
    const stop = () => abort.abort();
    signal?.addEventListener("abort", stop);
    try {
      return await fetch(url, { ...init, signal: abort.signal, cache: "no-store" });
    } catch (e) {
      if (signal?.aborted) throw new FerrowsError("aborted", "aborted");
      throw new FerrowsError(abort.signal.aborted ? "timeout" : "disconnected", `${url}: ${e?.message ?? e}`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    }
  }

  /** A command over HTTP: `publish`, `presence`, `history`, `ping` (a poll
   * of no channel: a round trip). A refused token makes the client connect
   * again (with a fresh one, from a token function). */
  async command(message) {
    try {
      return await this._command(message);
    } catch (err) {
      if (err.code === 101 && this.connected && !this.closed) {
        queueMicrotask(() => { if (!this.closed) this.client._lost(1006, err.message, true, false); });
      }
      throw err;
    }
  }

  async _command(message) {
    if (message.ping) {
      const res = await this._fetch(`${this.base}/api/poll`, { headers: this._headers() });
      if (!res.ok) throw await httpError(res);
      return {};
    }
    const read = message.presence ?? message.history;
    if (read) {
      const what = message.presence ? "presence" : "history";
      const limit = read.limit === undefined ? "" : `&limit=${encodeURIComponent(read.limit)}`;
      const res = await this._fetch(`${this.base}/api/${what}?channel=${encodeURIComponent(read.channel)}${limit}`, { headers: this._headers() });
      if (!res.ok) throw await httpError(res);
      return (await res.json()).result;
    }
    if (!message.publish) {
      const name = Object.keys(message)[0];
      throw new FerrowsError(104, `${name} is not available over ${this.client.transport}`);
    }
    const { channel, data } = message.publish;
    if (data instanceof Uint8Array) throw new FerrowsError(107, "binary data needs the WebSocket transport");
    const name = this.client.options.name;
    const query = name ? `?name=${encodeURIComponent(name)}` : "";
    const res = await this._fetch(`${this.base}/api/client/publish${query}`, {
      method: "POST",
      headers: this._headers(true),
      body: JSON.stringify({ channel, data }),
    });
    if (!res.ok) throw await httpError(res);
    return (await res.json()).result;
  }

  /** After a refused request: a subscription whose channel is at fault
   * fails (onError), found by polling each channel alone; over the count
   * of channels a request may name (413), those not subscribed yet fail (as
   * the WebSocket's subscribes over its limit would). `true` when some
   * did, so the request may go again without them. */
  async _blame(err) {
    if (err.status === 413) {
      const fresh = this._subscriptions().filter((sub) => sub.state !== "subscribed");
      for (const sub of fresh) sub._onError(err);
      return fresh.length > 0;
    }
    if (!CHANNEL_ERRORS.has(err.code)) return false;
    let blamed = false;
    for (const sub of this._subscriptions()) {
      const res = await this._fetch(`${this.base}/api/poll?${channelQuery([sub], false).join("&")}`, { headers: this._headers() });
      if (this.closed) return false;
      if (res.ok) continue;
      const why = await httpError(res);
      if (CHANNEL_ERRORS.has(why.code)) {
        sub._onError(why);
        blamed = true;
      }
    }
    return blamed;
  }

  /** A request failed: a channel at fault fails alone and the link goes on.
   * A refused token: the client connects again for a fresh one if this
   * link had connected, and stops otherwise. A malformed request (400)
   * stops it (it would fail again). Anything else loses the connection: the
   * client reconnects, or falls back to the next transport. */
  async _failed(err, retry) {
    if (this.closed) return;
    let blamed = false;
    try {
      blamed = await this._blame(err);
    } catch (e) {
      err = e;
    }
    if (this.closed) return;
    if (blamed) return retry();
    if (err.code === 101) {
      if (this.connected) return this.client._lost(1006, err.message, true, false);
      return this.client._fail(err, { code: 4001, reason: err.message });
    }
    if (err.status === 400) return this.client._fail(err, { code: 4000, reason: err.message });
    this.client._lost(1006, err.message, true, !this.connected);
  }
}

/** Server-Sent Events (`GET /api/stream`), and HTTP requests to publish. */
class StreamLink extends HttpLink {
  open() {
    const ES = this.client.options.EventSource ?? globalThis.EventSource;
    if (typeof ES !== "function") {
      // Not here (an old Node): the next transport.
      queueMicrotask(() => { if (!this.closed) this.client._lost(1006, "no EventSource", true); });
      return;
    }
    const subs = this._subscriptions();
    for (const sub of subs) {
      sub.state = "subscribing";
      sub._sentSince = sub.position ? { ...sub.position } : null;
    }
    const query = channelQuery(subs, true);
    if (this.token) query.push(`token=${encodeURIComponent(this.token)}`);
    if (this.client.options.name) query.push(`name=${encodeURIComponent(this.client.options.name)}`);
    const source = new ES(`${this.base}/api/stream?${query.join("&")}`);
    this.source = source;
    let opened = false; // this stream (the link may have had others)
    const mine = () => this.source === source && !this.closed;
    source.addEventListener("connected", (event) => {
      if (!mine()) return;
      opened = true;
      const result = JSON.parse(event.data);
      this.keepalive = result.ping > 0 ? result.ping * 1000 : 0;
      this._alive();
      if (this.connected) {
        // A stream opened again for new channels: a new client id.
        this.client.clientId = result.client ?? null;
        return;
      }
      this.connected = true;
      this.client._linkConnected(this, result);
    });
    source.addEventListener("ping", () => { if (mine()) this._alive(); });
    // The server ended the stream on purpose (credentials expired: 4007,
    // the application disconnected the user): as a WebSocket's close code.
    source.addEventListener("disconnect", (event) => {
      if (!mine()) return;
      let said = {};
      try { said = JSON.parse(event.data); } catch { /* the code is what matters */ }
      source.close();
      this.client._lost(said.code ?? 1006, said.reason ?? "disconnected", true);
    });
    source.addEventListener("subscribed", (event) => {
      if (!mine()) return;
      this._alive();
      const subscribed = JSON.parse(event.data);
      this.client._subs.get(subscribed.channel)?._onStreamSubscribed(subscribed);
    });
    source.onmessage = (event) => {
      if (!mine()) return;
      this._alive();
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg?.push) this.client._subs.get(msg.push.channel)?._onPush(msg.push);
    };
    source.onerror = () => {
      if (!mine()) return;
      // The stream ended or could not open. The browser would retry by
      // itself; the client does instead (with its backoff, its positions,
      // and the next transport when this one never opened), after finding
      // out why when it never opened (EventSource does not tell).
      source.close();
      if (opened) return this.client._lost(1006, "stream lost", true);
      this._diagnose().catch((e) => { if (!this.closed) this.client._lost(1006, `${e?.message ?? e}`, true); });
    };
  }

  /** The stream said something: it is alive for two more keepalives (the
   * server sends one when idle; `EventSource` itself never notices a
   * connection that died silently). */
  _alive() {
    clearTimeout(this.aliveTimer);
    if (!this.keepalive) return;
    this.aliveTimer = setTimeout(() => {
      if (!this.closed) this.client._lost(1006, "the stream went silent", true);
    }, 2 * this.keepalive + this.client.options.timeout);
  }

  /** Why the stream did not open: the same request as a poll says. */
  async _diagnose() {
    const query = channelQuery(this._subscriptions(), false);
    let err;
    try {
      const res = await this._fetch(`${this.base}/api/poll?${query.join("&")}`, { headers: this._headers() });
      err = res.ok ? new FerrowsError("disconnected", "the stream could not open") : await httpError(res);
    } catch (e) {
      err = e;
    }
    await this._failed(err, () => this.channelsChanged());
  }

  /** The subscriptions changed: the stream opens again with the new set (each
   * channel from its position). */
  channelsChanged() {
    if (this.closed || !this.source || this.changing) return;
    // Once for the changes made together (subscribing to several channels).
    this.changing = true;
    queueMicrotask(() => {
      this.changing = false;
      if (this.closed || !this.source) return;
      this.source.close();
      this.source = null;
      this.open();
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.aliveTimer);
    this.source?.close();
    this.source = null;
  }
}

/** HTTP long polling (`GET /api/poll` with `timeout`), and HTTP requests to
 * publish. A poll carries every subscription, each from its position;
 * subscribing or unsubscribing ends the poll in flight and starts the next. */
class PollLink extends HttpLink {
  open() {
    this._poll().catch((e) => { if (!this.closed) this.client._lost(1006, `${e?.message ?? e}`, true); });
  }

  async _poll() {
    while (!this.closed) {
      const subs = this._subscriptions();
      if (subs.length === 0 && this.connected) {
        // Nothing to poll: wait for a subscription (or the end).
        this.changed = new AbortController();
        await new Promise((resolve) => this.changed.signal.addEventListener("abort", resolve));
        continue;
      }
      const query = channelQuery(subs, true);
      // A subscription not subscribed on this connection yet: its
      // (re)subscription answers at once.
      const fresh = subs.some((sub) => sub.state !== "subscribed");
      // Connected: wait for news; otherwise (or with a new subscription)
      // answer at once.
      const wait = this.connected && !fresh ? this.client.options.longPollTimeout : 0;
      query.push(`timeout=${wait}`);
      this.changed = new AbortController();
      let res;
      try {
        res = await this._fetch(`${this.base}/api/poll?${query.join("&")}`, { headers: this._headers() },
          wait * 1000 + this.client.options.timeout, this.changed.signal);
      } catch (err) {
        if (this.closed) return;
        if (err.code === "aborted") continue;
        return this.client._lost(1006, err.message, true);
      }
      if (this.closed) return;
      if (!res.ok) {
        const err = await httpError(res);
        return this._failed(err, () => this._poll());
      }
      let answer;
      try { answer = (await res.json()).result; } catch (e) {
        if (this.closed) return;
        return this.client._lost(1006, `a poll's answer: ${e?.message ?? e}`, true);
      }
      if (this.closed) return;
      if (!this.connected) {
        this.connected = true;
        this.client._linkConnected(this, { client: null, user: null, ping: 0 });
      }
      for (const polled of answer.channels) {
        const sub = this.client._subs.get(polled.channel);
        if (sub && subs.includes(sub)) sub._onPolled(polled);
      }
    }
  }

  /** The subscriptions changed: the next poll carries the new set. */
  channelsChanged() {
    this.changed?.abort();
  }

  close() {
    this.closed = true;
    this.changed?.abort();
  }
}
