/**
 * tidings.js: the browser client of tidings (wire protocol: docs/protocol.md).
 *
 * An ES module with no dependencies and no build step. It also runs in Node 22+,
 * which has a global WebSocket.
 *
 *   import { connect } from "/static/tidings/tidings.js";
 *   const client = connect();                      // ws(s)://<this host>/realtime/ws
 *   const sub = client.subscribe("rooms.lobby", (msg) => show(msg.event, msg.data));
 *   await sub.ready;                               // rejects if the server refuses
 *   await client.publish("rooms.lobby", { text: "hi" });
 *
 * What the client does for you:
 * - matches replies to requests by `id` and turns `ok: false` into a rejected
 *   promise carrying a TidingsError;
 * - queues publishes and pings made while the socket is not open (each one waits at
 *   most `timeout` ms, counted from the call, for its reply);
 * - reconnects with exponential backoff and jitter after any close but 1000 and 1009,
 *   and resubscribes every topic with `since` = the last position it saw, so the
 *   server replays what was missed;
 * - drops messages whose position it has already seen for that topic, so a replay
 *   that overlaps what was delivered live reaches your callback only once.
 */

/** Reconnect delays in ms: min(max, initial * factor ** n) * (1 - jitter * random). */
const DEFAULT_BACKOFF = Object.freeze({ initial: 500, max: 15000, factor: 2, jitter: 0.5 });
const DEFAULT_TIMEOUT = 10000;
const DEFAULT_PATH = "/realtime/ws";
/** Close codes after which reconnecting cannot help: 1000 "nothing", 1009 "fix the sender". */
const NO_RECONNECT = new Set([1000, 1009]);

/**
 * The error every promise of this module rejects with.
 * `code` is the server's error code (e.g. "forbidden", "rejected") or one of the
 * client's own: "timeout" (no reply in time), "disconnected" (the connection dropped
 * before the reply), "closed" (client.close() was called), "unsubscribed",
 * "bad_frame" (the server sent something that is not a JSON object), "transport".
 */
export class TidingsError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message) {
    super(message || code);
    this.name = "TidingsError";
    this.code = code;
  }
}

/** Turn an `ok: false` reply into a TidingsError. */
function errorFromReply(reply) {
  const error = reply.error || {};
  return new TidingsError(String(error.code || "unknown"), error.message);
}

/** Report an exception thrown by user code without breaking the loop that called it. */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

/** A minimal event emitter: on/off, and listeners that throw don't stop the others. */
class Emitter {
  constructor() { this._listeners = new Map(); }

  /** Call `fn(arg)` on every `event`. Returns this, to chain. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  /** Stop calling `fn` on `event`. */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, arg) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try { fn(arg); } catch (error) { report(error); }
    }
  }
}

/**
 * Split a position "<epoch>:<offset>" (the epoch may itself contain ":").
 * Returns null for anything else: such positions are compared as opaque strings.
 */
function parsePosition(position) {
  const match = typeof position === "string" && /^(.*):(\d+)$/.exec(position);
  return match ? { epoch: match[1], offset: BigInt(match[2]) } : null;
}

/** Whether `position` comes after `last`. A new epoch starts a new history: always new. */
function isNewer(position, last) {
  if (last == null) return true;
  const p = parsePosition(position);
  const l = parsePosition(last);
  if (!p || !l) return position !== last;
  return p.epoch !== l.epoch || p.offset > l.offset;
}

/**
 * One `client.subscribe()` call. Several Subscriptions to one topic share one server
 * subscription (a "topic entry" inside the client) and so share `position`.
 *
 * Events: "subscribed" (the reply, after the first subscribe and after every
 * resubscribe on reconnect: check `reply.recovered` to know if anything was lost),
 * "error" (a TidingsError: the server refused the subscription, which is now over).
 */
export class Subscription extends Emitter {
  /** @internal Made by Client.subscribe(). */
  constructor(client, entry, callback) {
    super();
    /** @type {string} */
    this.topic = entry.topic;
    this._client = client;
    this._entry = entry;
    this._callback = callback;
    this._active = true;
    this._settled = false;
    /** @type {Promise<object>} Resolves with the subscribe reply; rejects with a TidingsError. */
    this.ready = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    // A refusal is also reported on "error"; a `ready` nobody awaits must not crash Node.
    this.ready.catch(() => {});
  }

  /** @type {string|null} The last position seen for this topic ("<epoch>:<offset>"). */
  get position() { return this._entry.position; }

  /** @type {boolean|undefined} `recovered` from the last subscribe reply. */
  get recovered() { return this._entry.recovered; }

  /** @type {boolean} False once unsubscribed, refused, or the client closed. */
  get active() { return this._active; }

  /** Stop receiving messages. The server is told once the topic's last Subscription goes. */
  unsubscribe() {
    if (!this._active) return;
    this._end(new TidingsError("unsubscribed", `unsubscribed from '${this.topic}' before the reply`));
    this._client._unsubscribe(this);
  }

  _settle(error, reply) {
    if (this._settled) return;
    this._settled = true;
    if (error) this._reject(error);
    else this._resolve(reply);
  }

  _subscribed(reply) {
    this._settle(null, reply);
    this._emit("subscribed", reply);
  }

  /** The server refused: settle `ready` and tell "error" listeners. */
  _fail(error) {
    this._end(error);
    this._emit("error", error);
  }

  /** Become inactive; an unanswered `ready` rejects with `error`. */
  _end(error) {
    this._active = false;
    this._settle(error);
  }

  _deliver(message) {
    try { this._callback(message); } catch (error) { report(error); }
  }
}

/**
 * A connection to the tidings server that reconnects by itself. Make one with connect().
 *
 * Events: "open" (each time a socket opens, after the topics were resubscribed),
 * "close" ({code, reason}, each time a socket closes), "reconnecting" ({attempt,
 * delay}: attempt counts from 1 since the last successful round trip), "error" (a
 * TidingsError: a server error that answers no request, an unparsable frame, a
 * transport error).
 */
export class Client extends Emitter {
  /** @param {string|URL} [url] @param {ConnectOptions} [options] */
  constructor(url, options = {}) {
    super();
    this.url = resolveUrl(url);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("tidings: no WebSocket here; pass options.WebSocket");
    }
    this._backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this._timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this._state = "closed";
    this._ws = null;             // the current socket, null between sockets
    this._timer = null;          // the pending reconnect
    this._attempt = 0;           // reconnects since the last successful round trip
    this._closed = false;        // close() was called: for good
    this._lastId = 0;
    this._pending = new Map();   // id -> {onReply(reply), onLost(error)} for sent frames
    this._outbox = [];           // requests waiting for an open socket
    this._topics = new Map();    // topic -> {topic, subs: Set, position, recovered, reply}
    if (options.autoconnect ?? true) this.open();
  }

  /** @type {"connecting"|"open"|"closed"} "connecting" also covers waiting to reconnect. */
  get state() { return this._state; }

  /**
   * Connect now: the first time with `autoconnect: false`, or to skip the wait before
   * a reconnect, or after the server closed with 1000/1009. Does nothing if a socket
   * is already connecting or open. Throws after close().
   */
  open() {
    if (this._closed) throw new TidingsError("closed", "this client was closed; connect() a new one");
    if (this._ws) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._state = "connecting";
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    // Events of a socket we have given up on are ignored.
    ws.onopen = () => { if (ws === this._ws) this._onOpen(); };
    ws.onmessage = (event) => { if (ws === this._ws) this._onFrame(event.data); };
    ws.onclose = (event) => { if (ws === this._ws) this._onClose(event); };
    ws.onerror = () => {
      if (ws === this._ws) this._emit("error", new TidingsError("transport", "WebSocket error"));
    };
  }

  /** Close for good: no reconnect; pending requests and `ready`s reject with "closed". */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._state = "closed";
    clearTimeout(this._timer);
    this._timer = null;
    const error = new TidingsError("closed", "the client was closed");
    this._dropPending(error);
    this._failOutbox(error);
    for (const entry of this._topics.values()) for (const sub of entry.subs) sub._end(error);
    this._topics.clear();
    // The socket's close event still fires "close"; the handlers ignore its frames.
    this._ws?.close(1000);
  }

  /**
   * Receive the messages published to `topic`: `callback({op: "message", topic,
   * position, event, data})`. `since` resumes after a position you stored, if the
   * server still has it (see `recovered`); it is ignored if this client already
   * subscribes to `topic`.
   * @param {string} topic @param {(message: object) => void} callback
   * @param {{since?: string}} [options] @returns {Subscription}
   */
  subscribe(topic, callback, { since } = {}) {
    if (this._closed) throw new TidingsError("closed", "this client was closed");
    if (typeof callback !== "function") throw new TypeError("tidings: subscribe() needs a callback");
    let entry = this._topics.get(topic);
    const first = !entry;
    if (first) {
      entry = { topic, subs: new Set(), position: since ?? null, recovered: undefined, reply: null };
      this._topics.set(topic, entry);
    }
    const sub = new Subscription(this, entry, callback);
    entry.subs.add(sub);
    if (entry.reply) sub._settle(null, entry.reply);         // already subscribed
    else if (first && this._state === "open") this._sendSubscribe(entry);
    // Otherwise the reply is on its way, or _onOpen() will subscribe.
    return sub;
  }

  /**
   * Publish `data` (any JSON) to `topic`. Resolves with the reply `{id, ok, topic,
   * position}` (position is null if the topic's handler broadcast nothing).
   * @param {string} topic @param {*} data @param {{event?: string}} [options]
   * @returns {Promise<object>}
   */
  publish(topic, data, { event } = {}) {
    const frame = { op: "publish", topic, data };
    if (event !== undefined) frame.event = event;
    return this._request(frame);
  }

  /** Round trip to the server. @returns {Promise<object>} the reply `{id, ok}`. */
  ping() {
    return this._request({ op: "ping" });
  }

  // --- requests ---------------------------------------------------------------

  /** Send `frame` (now, or once open) and settle with its reply, or fail after `timeout`. */
  _request(frame) {
    if (this._closed) return Promise.reject(new TidingsError("closed", "the client was closed"));
    return new Promise((resolve, reject) => {
      const request = { frame, id: null };
      let done = false;
      const settle = (error, reply) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const queued = this._outbox.indexOf(request);
        if (queued >= 0) this._outbox.splice(queued, 1);
        if (request.id !== null) this._pending.delete(request.id);
        if (error) reject(error);
        else resolve(reply);
      };
      request.onReply = (reply) => (reply.ok ? settle(null, reply) : settle(errorFromReply(reply)));
      request.onLost = (error) => settle(error);
      // (setTimeout would turn Infinity into 1 ms.)
      const timer = Number.isFinite(this._timeout) ? setTimeout(
        () => settle(new TidingsError("timeout", `no reply within ${this._timeout} ms`)),
        this._timeout,
      ) : null;
      this._outbox.push(request);
      this._flush();
    });
  }

  /** Send the queued requests if the socket is open. */
  _flush() {
    while (this._state === "open" && this._outbox.length) {
      const request = this._outbox.shift();
      request.id = this._send(request.frame, request);
    }
  }

  /** Send one frame with a fresh id; `handlers.onReply` gets its reply. */
  _send(frame, handlers) {
    const id = ++this._lastId;
    this._pending.set(id, handlers);
    this._ws.send(JSON.stringify({ id, ...frame }));
    return id;
  }

  _dropPending(error) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const handlers of pending) handlers.onLost(error);
  }

  _failOutbox(error) {
    for (const request of [...this._outbox]) request.onLost(error);
    this._outbox = [];
  }

  // --- subscriptions ----------------------------------------------------------

  _sendSubscribe(entry) {
    const frame = { op: "subscribe", topic: entry.topic };
    if (entry.position != null) frame.since = entry.position;
    // A lost subscribe is not an error: the next socket subscribes again.
    this._send(frame, { onReply: (reply) => this._onSubscribeReply(entry, reply), onLost() {} });
  }

  _onSubscribeReply(entry, reply) {
    if (this._topics.get(entry.topic) !== entry) return;   // unsubscribed meanwhile
    if (!reply.ok) {
      this._topics.delete(entry.topic);
      const error = errorFromReply(reply);
      for (const sub of [...entry.subs]) sub._fail(error);
      return;
    }
    entry.recovered = reply.recovered;
    entry.reply = reply;
    // When recovered, the replayed messages move `position` themselves. Taking the
    // reply's position (the head) could drop them if the reply arrives first.
    if (reply.recovered !== true && typeof reply.position === "string") entry.position = reply.position;
    for (const sub of [...entry.subs]) sub._subscribed(reply);
  }

  _unsubscribe(sub) {
    const entry = sub._entry;
    if (this._topics.get(sub.topic) !== entry || !entry.subs.delete(sub) || entry.subs.size) return;
    this._topics.delete(sub.topic);
    if (this._state === "open") this._send({ op: "unsubscribe", topic: sub.topic }, { onReply() {}, onLost() {} });
  }

  _onMessage(message) {
    const entry = this._topics.get(message.topic);
    if (!entry) return;
    if (typeof message.position === "string") {
      if (!isNewer(message.position, entry.position)) return;   // seen already
      entry.position = message.position;
    }
    for (const sub of [...entry.subs]) if (sub.active) sub._deliver(message);
  }

  // --- the socket -------------------------------------------------------------

  _onOpen() {
    this._state = "open";
    for (const entry of this._topics.values()) this._sendSubscribe(entry);
    // After a reconnect, some round trip must succeed to reset the backoff.
    if (this._attempt > 0 && this._topics.size === 0) this._send({ op: "ping" }, { onReply() {}, onLost() {} });
    this._flush();
    this._emit("open");
  }

  _onFrame(data) {
    if (this._closed) return;
    let frame;
    try { frame = JSON.parse(data); } catch { frame = null; }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      this._emit("error", new TidingsError("bad_frame", "the server sent a frame that is not a JSON object"));
      return;
    }
    if (frame.op === "message") return this._onMessage(frame);
    if (!("id" in frame)) return;                // an unknown kind of frame: ignore
    if (frame.id === null) {                     // an error that answers no request
      if (frame.ok === false) this._emit("error", errorFromReply(frame));
      return;
    }
    const handlers = this._pending.get(frame.id);
    if (!handlers) return;                       // e.g. the reply to a timed-out request
    this._pending.delete(frame.id);
    if (frame.ok) this._attempt = 0;             // the server answers: stop backing off
    handlers.onReply(frame);
  }

  _onClose({ code, reason }) {
    this._ws = null;
    const reconnect = !this._closed && !NO_RECONNECT.has(code);
    if (!this._closed) this._state = reconnect ? "connecting" : "closed";
    const error = new TidingsError("disconnected", `the connection closed (${code}) before the reply`);
    this._dropPending(error);
    if (!reconnect) this._failOutbox(error);    // nothing will send them
    this._emit("close", { code, reason });
    if (reconnect && !this._closed && !this._ws) this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const { initial, max, factor, jitter } = this._backoff;
    const delay = Math.min(max, initial * factor ** this._attempt) * (1 - jitter * Math.random());
    this._attempt += 1;
    this._timer = setTimeout(() => {
      this._timer = null;
      try {
        this.open();
      } catch (error) {                          // e.g. the constructor threw
        this._ws = null;
        this._emit("error", error);
        if (!this._closed) this._scheduleReconnect();
      }
    }, delay);
    this._emit("reconnecting", { attempt: this._attempt, delay });
  }
}

/** Default to ws(s)://<location.host>/realtime/ws; resolve relative urls in a browser. */
function resolveUrl(url) {
  const location = globalThis.location;
  if (url == null || url === "") {
    if (!location) throw new TypeError("tidings: connect() needs a url where there is no `location`");
    url = DEFAULT_PATH;
  }
  url = String(url);
  if (!location || /^wss?:/i.test(url)) return url;
  const resolved = new URL(url, location.href);
  resolved.protocol = resolved.protocol === "https:" ? "wss:" : "ws:";
  return resolved.href;
}

/**
 * @typedef {object} ConnectOptions
 * @property {Function} [WebSocket] constructor to use instead of globalThis.WebSocket
 * @property {{initial?: number, max?: number, factor?: number, jitter?: number}} [backoff]
 *   reconnect delays in ms, default {initial: 500, max: 15000, factor: 2, jitter: 0.5}
 * @property {number} [timeout] ms a publish or ping waits for its reply, default 10000;
 *   Infinity waits for ever
 * @property {boolean} [autoconnect] connect at once, default true; else call open()
 */

/**
 * Make a Client. `connect(options)` works too, in a browser.
 * @param {string|URL|ConnectOptions} [url] @param {ConnectOptions} [options]
 * @returns {Client}
 */
export function connect(url, options) {
  if (options === undefined && url !== null && typeof url === "object" && !(url instanceof URL)) {
    return new Client(undefined, url);
  }
  return new Client(url, options);
}
