/**
 * client.js: Client, a connection to the server that reconnects by itself, and
 * connect(). The Client keeps the topics, their positions, the requests and when to
 * reconnect; it talks to the server through one transport at a time (transports/),
 * which sees nothing of it but the settings and callbacks of transports/index.js.
 */

import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
import { describe, errorFromReply, isRefusal, TidingsError } from "./errors.js";
import { Emitter } from "./emitter.js";
import { EMPTY, isNewer } from "./positions.js";
import { metaProblem, presenceMeta, Roster, unsupportedUpdate } from "./presence.js";
import { Subscription } from "./subscription.js";
import { transportClass, TRANSPORTS, usableTransports } from "./transports/index.js";
import { option, resolveUrls } from "./urls.js";
import { isObject, sameJson } from "./util.js";

const DEFAULT_TIMEOUT = 10000;
/** Seconds the server may hold a long poll. */
const DEFAULT_POLL_TIMEOUT = 25;
/** Failed reopens of a transport that worked before, after which the client falls back. */
const REOPEN_TRIES = 2;
/** Close codes after which reconnecting cannot help: 1000 "nothing", 1009 "fix the sender". */
const NO_RECONNECT = new Set([1000, 1009]);
/** 4010 "idle": the connection held no subscription. Reconnect when there is one (or a request). */
const IDLE = 4010;
/** 1013 "try again in N s": too many connections at once; wait at least that. */
const TRY_AGAIN = 1013;

/**
 * A connection to the tidings server that reconnects by itself. Make one with connect().
 *
 * Events: "open" (each time a connection opens, after the topics were resubscribed),
 * "close" ({code, reason}, each time a connection closes; 1006 when an HTTP stream or
 * poll failed), "reconnecting" ({attempt, delay}: attempt counts from 1 since the last
 * successful round trip), "transport" (the name of the transport now used, when it
 * changes), "error" (a TidingsError: a server error that answers no request, an
 * unparsable frame, a transport error).
 *
 * Transports are tried in the order of `options.transports`: when one fails before it
 * ever connected (no WebSocket here, the upgrade is refused or blocked, an SSE stream
 * that cannot be read...), the next one is tried at once; after the last, the first
 * again, after a backoff delay. Once a transport has connected, the client keeps it and
 * reconnects it with backoff, unless it fails to reopen REOPEN_TRIES times in a row:
 * then it falls back too (a network that stopped letting WebSockets through).
 */
export class Client extends Emitter {
  /** @param {string|URL} [url] @param {ConnectOptions} [options] */
  constructor(url, options = {}) {
    super();
    const urls = resolveUrls(url, options.baseUrl);
    /** @type {string} The WebSocket url. */
    this.url = urls.url;
    /** @type {string} Where the HTTP endpoints are: `${baseUrl}sse`, `poll`, `publish`. */
    this.baseUrl = urls.baseUrl;
    // What the transports talk to the server with (injectable: tests; null: none here).
    this._io = Object.freeze({
      WebSocket: option(options, "WebSocket"),
      EventSource: option(options, "EventSource"),
      fetch: option(options, "fetch"),
      cookie: options.cookie ?? (() => globalThis.document?.cookie ?? ""),
    });
    this._kinds = usableTransports(options.transports ?? TRANSPORTS, this._io, this.baseUrl);
    this._backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this._timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this._pollTimeout = options.pollTimeout ?? DEFAULT_POLL_TIMEOUT;
    this._warn = options.warn ?? true;
    // A token (tidings.token() on the server) instead of the session cookie: `token`, or
    // `getToken()` (may return a promise), asked again before every (re)connect.
    this._getToken = options.getToken ?? (options.token ? () => options.token : null);
    this._token = null;
    this._tokenWait = null;      // the getToken() call a connect waits for
    this._retryHint = 0;         // ms the server asked to wait before the next reconnect
    this._state = "closed";
    this._transport = null;      // the current transport object, null between connections
    this._link = null;           // what the client knows of it: {name, opened}
    this._transportName = null;  // the name of the last transport started
    this._kind = 0;              // the index in _kinds of the transport to use
    this._proven = new Set();    // names of the transports that connected once
    this._failedReopens = 0;     // reopens in a row of a proven transport that failed
    this._timer = null;          // the pending reconnect
    this._idle = false;          // closed 4010 (no subscription): reconnect on the next use
    this._attempt = 0;           // reconnects since the last successful round trip
    this._closed = false;        // close() was called: for good
    this._lastId = 0;            // the last WebSocket frame id, unique across sockets
    this._unsent = [];           // requests not sent yet: they wait for an open connection
    this._posting = Promise.resolve();  // the publishes over HTTP, one after the other
    this._inflight = new Set();  // requests sent, waiting for their reply
    // topic -> {topic, subs: Set, position, recovered, reply, events, watch (the presence
    // asked for: null, true or a meta), version (of watch), roster (a Roster), waiters
    // (Presence.update() promises: {version, settle(error)})}
    this._topics = new Map();
    if (options.autoconnect ?? true) this.open();
  }

  /** @type {"connecting"|"open"|"closed"} "connecting" also covers waiting to reconnect. */
  get state() { return this._state; }

  /** @type {"websocket"|"sse"|"longpoll"|null} The transport in use (or being tried). */
  get transport() { return this._transportName; }

  /**
   * Connect now: the first time with `autoconnect: false`, or to skip the wait before
   * a reconnect, or after the server closed with 1000/1009. Does nothing if a
   * connection is already connecting or open. Throws after close().
   */
  open() {
    if (this._closed) throw new TidingsError("closed", "this client was closed; connect() a new one");
    if (this._transport || this._tokenWait) return;
    this._idle = false;
    clearTimeout(this._timer);
    this._timer = null;
    this._state = "connecting";
    const name = this._kinds[this._kind];
    if (name === "longpoll") {
      for (const entry of this._topics.values()) this._presenceSettled(entry, undefined, unsupportedUpdate());
    }
    if (name !== this._transportName) {
      this._transportName = name;
      this._emit("transport", name);
      if (this._closed || this._transport) return;   // a listener closed, or opened
    }
    if (this._getToken) return this._withToken(name);
    this._start(name);
  }

  /** Ask `getToken` for a token, then start the transport with it (a failure: retry). */
  _withToken(name) {
    const waiting = {};
    this._tokenWait = waiting;                     // connecting: open() does nothing now
    Promise.resolve().then(() => this._getToken()).then((token) => {
      if (this._tokenWait !== waiting) return;
      this._tokenWait = null;
      if (this._closed || this._transport) return;
      this._token = typeof token === "string" && token ? token : null;
      this._start(name);
    }, (error) => {
      if (this._tokenWait !== waiting) return;
      this._tokenWait = null;
      if (this._closed || this._transport) return;
      this._emit("error", new TidingsError("token", `getToken() failed: ${describe(error)}`));
      if (!this._closed && !this._transport && !this._timer) this._scheduleReconnect();
    });
  }

  /** Start transport `name` for the client's topics. */
  _start(name) {
    const link = { name, opened: false };
    const Transport = transportClass(name, this._io);
    const transport = new Transport(this._transportSettings(), this._transportCallbacks(link));
    this._link = link;
    this._transport = transport;
    try {
      transport.open();
    } catch (error) {                              // e.g. the WebSocket constructor threw
      this._emit("error", error instanceof TidingsError ? error : new TidingsError("transport", describe(error)));
      this._transportClosed(link, { code: 1006, reason: describe(error) });
    }
  }

  /** Close for good: no reconnect; pending requests and `ready`s reject with "closed". */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._state = "closed";
    this._tokenWait = null;
    clearTimeout(this._timer);
    this._timer = null;
    const error = new TidingsError("closed", "the client was closed");
    for (const request of [...this._inflight, ...this._unsent]) request.settle(error);
    for (const entry of this._topics.values()) {
      this._presenceSettled(entry, undefined, error);
      for (const sub of entry.subs) sub._end(error);
    }
    this._topics.clear();
    // The transport still reports its close, which fires "close".
    this._transport?.close();
  }

  /**
   * Receive the messages published to `topic`: `callback({op: "message", topic,
   * position, event, data})`. `since` resumes after a position you stored, if the
   * server still has it (see `recovered`); it is ignored if this client already
   * subscribes to `topic`. `events` lists the event names you publish on this topic
   * besides "message": only the EventSource transport (used where fetch cannot
   * stream) needs them, as it can receive only the event names it listens to.
   * `presence`: `true` watches the topic's presence (`sub.presence`), a meta (an
   * object of at most 1 KB of JSON, without "ref") also tracks this client with it
   * (not over long-polling, where a client only watches). On a topic this client
   * already subscribes to, it adds what is missing (the topic is subscribed anew).
   * `initial`: on a model feed's topic, the callback first gets `{op: "snapshot",
   * topic, position, rows: [{pk, data}]}` (again after every resubscribe: replace your
   * rows with it), then the changes after it (WebSocket only).
   * @param {string} topic @param {(message: object) => void} callback
   * @param {{since?: string, events?: string[], presence?: boolean|object, initial?: boolean}} [options]
   * @returns {Subscription}
   */
  subscribe(topic, callback, { since, events = [], presence, initial = false } = {}) {
    if (this._closed) throw new TidingsError("closed", "this client was closed");
    if (typeof callback !== "function") throw new TypeError("tidings: subscribe() needs a callback");
    const watch = presence === true ? true : presence == null || presence === false ? null : presenceMeta(presence);
    let entry = this._topics.get(topic);
    const first = !entry;
    if (first) {
      entry = {
        topic, subs: new Set(), position: since ?? null, recovered: undefined, reply: null, events: new Set(),
        watch, version: 0, roster: new Roster(), waiters: new Set(), initial: Boolean(initial),
      };
      this._topics.set(topic, entry);
    }
    // More presence than the topic has: watch, or track, or track with another meta.
    const more = !first && watch !== null && (entry.watch === null || (watch !== true && !sameJson(watch, entry.watch)));
    if (more) {
      entry.watch = watch;
      entry.version += 1;
    }
    const newEvents = events.filter((name) => !entry.events.has(name));
    for (const name of newEvents) entry.events.add(name);
    const sub = new Subscription(this, entry, callback);
    entry.subs.add(sub);
    if (entry.reply) sub._settle(null, entry.reply);         // already subscribed
    if (first) {
      this._transport?.add(entry);
      this._wake();
    } else {
      if (more) this._transport?.presence(entry);
      if (newEvents.length) this._transport?.refresh();
    }
    // Otherwise the reply is on its way, or the transport subscribes once it opens.
    return sub;
  }

  /**
   * Publish `data` (any JSON) to `topic`. Resolves with the reply `{id, ok, topic,
   * position}` (position is null if the topic's handler broadcast nothing; there is no
   * `id` when it went over HTTP).
   * @param {string} topic @param {*} data @param {{event?: string}} [options]
   * @returns {Promise<object>}
   */
  publish(topic, data, { event } = {}) {
    const frame = { op: "publish", topic, data };
    if (event !== undefined) frame.event = event;
    return this._request(frame);
  }

  /**
   * Round trip to the server. @returns {Promise<object>} the reply `{id, ok}`. Over SSE
   * and long-poll, which have no ping, it resolves `{ok: true}` once connected.
   */
  ping() {
    return this._request({ op: "ping" });
  }

  // --- requests ---------------------------------------------------------------

  /** Send `frame` (now, or once open) and settle with its reply, or fail after `timeout`. */
  _request(frame) {
    if (this._closed) return Promise.reject(new TidingsError("closed", "the client was closed"));
    return new Promise((resolve, reject) => {
      // The transport that sends it sets `cancel` (forget the reply, abort the fetch).
      const request = { frame, cancel: null, done: false };
      request.settle = (error, reply) => {
        if (request.done) return;
        request.done = true;
        clearTimeout(timer);
        const queued = this._unsent.indexOf(request);
        if (queued >= 0) this._unsent.splice(queued, 1);
        this._inflight.delete(request);
        request.cancel?.();
        if (error && frame.op === "publish" && isRefusal(error)) this._warnRefused("publish to", frame.topic, error);
        if (error) reject(error);
        else resolve(reply);
      };
      // (setTimeout would turn Infinity into 1 ms.)
      const timer = Number.isFinite(this._timeout) ? setTimeout(
        () => request.settle(new TidingsError("timeout", `no reply within ${this._timeout} ms`)),
        this._timeout,
      ) : null;
      this._unsent.push(request);
      this._wake();
      this._flush();
    });
  }

  /** Closed as idle (4010): there is something to do again, so connect. */
  _wake() {
    if (!this._idle || this._closed) return;
    this._idle = false;
    this.open();
  }

  /** Send the queued requests if connected. */
  _flush() {
    while (this._state === "open" && this._transport && this._unsent.length) {
      const request = this._unsent.shift();
      this._inflight.add(request);
      this._transport.request(request);
    }
  }

  /** Settle every request not sent yet with `error`. */
  _failUnsent(error) {
    for (const request of [...this._unsent]) request.settle(error);
    this._unsent = [];
  }

  // --- subscriptions (called by the transports too) -----------------------------

  /** The server's answer to subscribing `entry`: `{ok: true, topic, position, recovered?}` or an error. */
  _onSubscribeReply(entry, reply) {
    if (this._topics.get(entry.topic) !== entry) return;   // unsubscribed meanwhile
    if (!reply.ok) {
      this._topics.delete(entry.topic);
      const error = errorFromReply(reply);
      this._warnRefused("subscribe to", entry.topic, error);
      this._presenceSettled(entry, undefined, error);
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

  /**
   * The server refused a subscribe or a publish: say so on the console (unless `warn:
   * false`), as a refusal nobody listens for would otherwise go unseen.
   */
  _warnRefused(what, topic, error) {
    if (this._warn) console.warn(`tidings: the server refused to ${what} '${topic}' (${error.code}): ${error.message}`);
  }

  _unsubscribe(sub) {
    const entry = sub._entry;
    if (this._topics.get(sub.topic) !== entry || !entry.subs.delete(sub) || entry.subs.size) return;
    this._topics.delete(sub.topic);
    this._presenceSettled(entry, undefined, new TidingsError("unsubscribed", `unsubscribed from '${sub.topic}'`));
    this._transport?.remove(sub.topic);
  }

  /** A model feed's snapshot `{op: "snapshot", topic, position, rows}`: to the callbacks. */
  _onSnapshot(frame) {
    const entry = this._topics.get(frame.topic);
    if (!entry || this._closed) return;
    for (const sub of [...entry.subs]) if (sub.active) sub._deliver(frame);
  }

  /**
   * `{op: "gap", topic, position}`, from any transport: the topic's history was lost
   * under the live stream (the server's broker restarted empty). Messages may be
   * missing: like a resume answered `recovered: false`, every Subscription of the topic
   * hears "gap", and the topic goes on from `position`. A topic joined empty (at
   * "0:0") that has had no message since lost nothing: its gap is not told (through
   * Pushpin, a WebSocket hears one before every topic's first message).
   */
  _onGap(frame) {
    if (this._closed || !isObject(frame) || typeof frame.position !== "string") return;
    const entry = this._topics.get(frame.topic);
    if (!entry) return;
    const empty = entry.position === EMPTY;
    entry.position = frame.position;
    if (empty) return;
    entry.recovered = false;
    const gap = { topic: frame.topic, position: frame.position, recovered: false };
    for (const sub of [...entry.subs]) if (sub.active) sub._gap(gap);
  }

  /** A message `{op: "message", topic, position, event, data}`, from any transport. */
  _onMessage(message) {
    if (this._closed || message === null || typeof message !== "object") return;
    const entry = this._topics.get(message.topic);
    if (!entry) return;
    if (typeof message.position === "string") {
      if (!isNewer(message.position, entry.position)) return;   // seen already
      entry.position = message.position;
    }
    for (const sub of [...entry.subs]) if (sub.active) sub._deliver(message);
  }

  /**
   * A presence state or diff, from any transport: `{op: "presence", topic, state |
   * count}` or `{op: "presence_diff", topic, joins, leaves | count}`. Ignored for a
   * topic this client does not subscribe to, or whose presence it does not watch.
   */
  _onPresence(frame) {
    if (this._closed || !isObject(frame)) return;
    const entry = this._topics.get(frame.topic);
    if (!entry || entry.watch === null) return;
    entry.roster.apply(frame, (name, ...args) => {
      for (const sub of [...entry.subs]) if (sub.active) sub.presence._emit(name, ...args);
    });
  }

  /** Presence.update(): track `entry`'s topic with `meta` from now on. */
  _updatePresence(entry, meta) {
    if (this._closed) return Promise.reject(new TidingsError("closed", "the client was closed"));
    if (this._topics.get(entry.topic) !== entry) {
      return Promise.reject(new TidingsError("unsubscribed", `not subscribed to '${entry.topic}'`));
    }
    const problem = metaProblem(meta);
    if (problem) return Promise.reject(new TidingsError("bad_request", problem));
    if (this._transportName === "longpoll") return Promise.reject(unsupportedUpdate());
    entry.watch = JSON.parse(JSON.stringify(meta));
    entry.version += 1;
    const version = entry.version;
    const promise = new Promise((resolve, reject) => {
      const waiter = { version };
      const timer = Number.isFinite(this._timeout) ? setTimeout(
        () => waiter.settle(new TidingsError("timeout", `no reply within ${this._timeout} ms`)),
        this._timeout,
      ) : null;
      waiter.settle = (error) => {
        if (!entry.waiters.delete(waiter)) return;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      entry.waiters.add(waiter);
    });
    // Not connected: the transport subscribes with the new meta once it opens.
    this._transport?.presence(entry);
    return promise;
  }

  /**
   * The server has `entry`'s presence as of `version` (or refused it: `error`): settle
   * the updates up to it (all of them if `version` is undefined). A later meta that
   * is applied settles the earlier ones it replaced.
   */
  _presenceSettled(entry, version, error) {
    for (const waiter of [...entry.waiters]) {
      if (version === undefined || waiter.version <= version) waiter.settle(error);
    }
  }

  // --- transports (the interface: transports/index.js) ---------------------------

  /** What a new transport gets to read: a snapshot of the options it needs. */
  _transportSettings() {
    return Object.freeze({
      url: this.url, baseUrl: this.baseUrl, ...this._io, timeout: this._timeout, pollTimeout: this._pollTimeout,
      token: this._token,
    });
  }

  /**
   * The callbacks and accessors a transport may use, and nothing else of the client
   * (transports/index.js). `link` is what the client knows of that transport, {name,
   * opened}: its onOpen and onClose are ignored once it is no longer the current one.
   */
  _transportCallbacks(link) {
    return Object.freeze({
      entries: () => [...this._topics.values()],
      entry: (topic) => this._topics.get(topic),
      backingOff: () => this._attempt > 0,
      nextId: () => ++this._lastId,
      inOrder: (task) => { this._posting = this._posting.then(task); },
      onOpen: () => this._transportOpened(link),
      onClose: (close) => this._transportClosed(link, close),
      // The server answered over this transport: it works here, no more falling back.
      onProven: () => { this._proven.add(link.name); },
      // A round trip succeeded: the next reconnect waits the shortest delay.
      onRoundTrip: () => { this._attempt = 0; },
      // The topic is subscribed anew: its presence state comes anew too.
      onSubscribing: (entry) => entry.roster.reset(),
      onSubscribeReply: (entry, reply) => this._onSubscribeReply(entry, reply),
      onMessage: (message) => this._onMessage(message),
      onSnapshot: (frame) => this._onSnapshot(frame),
      onGap: (frame) => this._onGap(frame),
      onPresence: (frame) => this._onPresence(frame),
      onPresenceSettled: (entry, version, error) => this._presenceSettled(entry, version, error),
      onError: (error) => this._emit("error", error),
    });
  }

  /** The transport connected: send what waits. */
  _transportOpened(link) {
    if (link !== this._link || this._closed) return;
    link.opened = true;
    this._failedReopens = 0;
    this._state = "open";
    this._flush();
    this._emit("open");
  }

  /** The transport is over (it closed, failed, or never connected): reconnect or fall back. */
  _transportClosed(link, { code, reason }) {
    if (link !== this._link) return;
    const hint = code === TRY_AGAIN && /in ([0-9.]+) s/.exec(reason ?? "");
    this._retryHint = hint ? Number(hint[1]) * 1000 : 0;
    this._link = null;
    this._transport = null;
    this._idle = code === IDLE && !this._closed && !this._unsent.length && !this._topics.size;
    const reconnect = !this._closed && !NO_RECONNECT.has(code) && !this._idle;
    if (!this._closed) this._state = reconnect ? "connecting" : "closed";
    if (!reconnect && !this._idle) {             // nothing will send them
      this._failUnsent(new TidingsError("disconnected", `the connection closed (${code}) before the reply`));
    }
    this._emit("close", { code, reason });
    if (!reconnect || this._closed || this._transport || this._timer) return;
    if (!link.opened && this._proven.has(link.name)) {
      // It worked here before, but keeps failing to reopen: maybe the network changed
      // (a proxy that refuses WebSockets now). Past REOPEN_TRIES, fall back as well.
      this._failedReopens += 1;
      if (this._failedReopens >= REOPEN_TRIES) {
        this._proven.delete(link.name);
        this._failedReopens = 0;
      }
    }
    if (this._proven.has(link.name)) {
      this._scheduleReconnect();
    } else if (this._kind + 1 < this._kinds.length) {
      this._kind += 1;                           // fall back to the next transport, now
      this.open();
    } else {
      this._kind = 0;                            // none worked: start over, after a while
      this._scheduleReconnect();
    }
  }

  _scheduleReconnect() {
    // 1013 "try again in N s": the server admits a reconnect storm at a bounded rate
    const delay = Math.max(backoffDelay(this._backoff, this._attempt), this._retryHint);
    this._retryHint = 0;
    this._attempt += 1;
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) this.open();
    }, delay);
    this._emit("reconnecting", { attempt: this._attempt, delay });
  }
}

/**
 * @typedef {object} ConnectOptions
 * @property {Array<"websocket"|"sse"|"longpoll">} [transports] the transports to try, in
 *   order, default all three; one alone forces it
 * @property {string|URL} [baseUrl] where the HTTP endpoints are, default
 *   `${location.origin}/realtime/` (or derived from the WebSocket url); the WebSocket
 *   url is `${baseUrl}ws` with ws(s): unless given
 * @property {Function|null} [WebSocket] constructor to use instead of globalThis.WebSocket;
 *   null: none
 * @property {Function|null} [EventSource] likewise, for EventSource (used for SSE only
 *   where there is no fetch)
 * @property {Function|null} [fetch] likewise, for fetch (SSE, long-poll, publish over HTTP)
 * @property {() => string} [cookie] where to read Django's `csrftoken` cookie, sent as
 *   X-CSRFToken on publishes over HTTP; default: document.cookie
 * @property {{initial?: number, max?: number, factor?: number, jitter?: number}} [backoff]
 *   reconnect delays in ms, default {initial: 500, max: 15000, factor: 2, jitter: 0.5}
 * @property {number} [timeout] ms a publish or ping waits for its reply, and an SSE
 *   stream for its first event, default 10000; Infinity waits for ever
 * @property {number} [pollTimeout] s the server may hold a long poll, default 25 (the
 *   server refuses more than its POLL_MAX_TIMEOUT)
 * @property {string} [token] a token from the server's `tidings.token(user)`, sent instead
 *   of relying on the session cookie (another origin, an app): a WebSocket subprotocol,
 *   else `Authorization: Bearer` (EventSource: `?token=`)
 * @property {() => string|Promise<string>} [getToken] asked for a fresh token before each
 *   (re)connect (the server closes 4401 "token expired" when one runs out); a failure
 *   emits "error" and retries after the backoff
 * @property {boolean} [autoconnect] connect at once, default true; else call open()
 * @property {boolean} [warn] console.warn each subscribe and publish the server refuses
 *   (topic, code, message), default true; false: only `ready`, the publish's promise and
 *   the Subscription's "error" event tell
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
