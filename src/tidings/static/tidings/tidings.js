/**
 * tidings.js: the browser client of tidings (wire protocol: docs/protocol.md).
 *
 * An ES module with no dependencies and no build step. It also runs in Node 22+,
 * which has a global WebSocket and fetch.
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
 * - queues publishes and pings made while not connected (each one waits at most
 *   `timeout` ms, counted from the call, for its reply);
 * - reconnects with exponential backoff and jitter after any close but 1000 and 1009,
 *   and resubscribes every topic with `since` = the last position it saw, so the
 *   server replays what was missed;
 * - drops messages whose position it has already seen for that topic, so a replay
 *   that overlaps what was delivered live reaches your callback only once;
 * - falls back from WebSocket to Server-Sent Events to long-polling when a transport
 *   cannot connect (see `transports`), with the same API and no message lost or
 *   delivered twice: the next transport resumes every topic from its last position.
 *   Over SSE and long-poll, publishes go over `POST <baseUrl>publish`;
 * - keeps each topic's presence (who is there) when asked to:
 *   `client.subscribe(topic, cb, {presence: true | meta})`, then `sub.presence`
 *   (`members`, `count`, `list()`, `update(meta)`, events "sync", "join", "leave",
 *   "change"), the same on every transport.
 */

/** Reconnect delays in ms: min(max, initial * factor ** n) * (1 - jitter * random). */
const DEFAULT_BACKOFF = Object.freeze({ initial: 500, max: 15000, factor: 2, jitter: 0.5 });
const DEFAULT_TIMEOUT = 10000;
const DEFAULT_BASE = "/realtime/";
/** Seconds the server may hold a long poll. */
const DEFAULT_POLL_TIMEOUT = 25;
const TRANSPORTS = Object.freeze(["websocket", "sse", "longpoll"]);
/** Failed reopens of a transport that worked before, after which the client falls back. */
const REOPEN_TRIES = 2;
/** Close codes after which reconnecting cannot help: 1000 "nothing", 1009 "fix the sender". */
const NO_RECONNECT = new Set([1000, 1009]);
/** HTTP error codes that refuse the request's topics, rather than say the server is unwell. */
const REFUSALS = new Set(["forbidden", "invalid_topic", "bad_request"]);
/** Handlers of a frame whose reply nobody waits for. */
const IGNORE = Object.freeze({ onReply() {}, onLost() {} });
/** The largest presence meta the server takes, in bytes of (Python's) JSON. */
const MAX_META_BYTES = 1024;

/**
 * The error every promise of this module rejects with.
 * `code` is the server's error code (e.g. "forbidden", "rejected") or one of the
 * client's own: "timeout" (no reply in time), "disconnected" (the connection dropped
 * before the reply), "closed" (client.close() was called), "unsubscribed",
 * "bad_frame" (the server sent something that is not a JSON object), "transport",
 * "unsupported" (e.g. a presence meta update over long-polling).
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

/** What Presence.update() rejects with over long-polling. */
function unsupportedUpdate() {
  return new TidingsError("unsupported", "presence cannot be tracked over long-polling (a poller only watches)");
}

/** Report an exception thrown by user code without breaking the loop that called it. */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

/** The message of anything thrown. */
function describe(error) {
  return String(error?.message ?? error);
}

/** JSON.parse, or undefined. */
function parseJson(text) {
  try { return JSON.parse(text); } catch { return undefined; }
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

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try { fn(...args); } catch (error) { report(error); }
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

// --- presence ------------------------------------------------------------------
//
// A presence *state* is an object: member key -> {info, metas: [{ref, ...meta}]}, one
// meta per tracked connection (docs/protocol.md, "Presence"). A *diff* is {joins,
// leaves} of the same shape; a meta update is its old meta (same ref) leaving and the
// new one joining. syncState() and syncDiff() are pure, as in Phoenix's presence.js:
// they never change their arguments and return a new state (treat states as
// immutable: unchanged members are shared between the old state and the new).

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function sameJson(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** `object[key]` if it is its own property (a member key may well be "__proto__"). */
function own(object, key) {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** `object[key] = value`, as a plain property whatever the key. */
function put(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

/** The metas of a member, [] if it has none (or is no member). */
function metasOf(member) {
  return Array.isArray(member?.metas) ? member.metas.filter(isObject) : [];
}

/** Whether `metas` holds `meta`: the same ref, the same content. */
function holds(metas, meta) {
  return metas.some((m) => m.ref === meta.ref && sameJson(m, meta));
}

/** Tell onJoin / onLeave what changed from `before` to `after`, joins first (as Phoenix). */
function tell(before, after, joined, left, onJoin, onLeave) {
  for (const [key, member] of joined) {
    onJoin?.(key, member, { first: !Object.hasOwn(before, key), current: own(after, key) });
  }
  for (const [key, member] of left) {
    onLeave?.(key, member, { last: !Object.hasOwn(after, key), current: own(after, key) });
  }
}

/**
 * The state after a full `newState` replaced `state` (both key -> {info, metas}).
 * `onJoin(key, joined, {first, current})` is called for each key with metas that were
 * not in `state` (a meta whose content changed counts as joining), then
 * `onLeave(key, left, {last, current})` for each key with metas that are gone:
 * `joined`/`left` is {info, metas: those metas}; `first` says the key was absent from
 * `state`, `last` that it is absent from the result; `current` is the key's member in
 * the result (undefined when `last`). Returns a new object, a copy of `newState`.
 * @param {object} state @param {object} newState
 * @param {Function} [onJoin] @param {Function} [onLeave] @returns {object}
 */
export function syncState(state, newState, onJoin, onLeave) {
  const before = isObject(state) ? state : {};
  const after = isObject(newState) ? newState : {};
  const next = {};
  const joined = [];
  const left = [];
  for (const [key, member] of Object.entries(after)) {
    const metas = metasOf(member);
    if (!metas.length) continue;
    const info = member.info ?? {};
    put(next, key, { info, metas });
    const current = metasOf(own(before, key));
    const added = metas.filter((meta) => !holds(current, meta));
    if (added.length) joined.push([key, { info, metas: added }]);
  }
  for (const [key, member] of Object.entries(before)) {
    const kept = metasOf(own(next, key));
    const gone = metasOf(member).filter((meta) => !holds(kept, meta));
    if (gone.length) left.push([key, { info: member.info ?? {}, metas: gone }]);
  }
  tell(before, next, joined, left, onJoin, onLeave);
  return next;
}

/**
 * The state after `diff` ({joins, leaves}, as the server sends them) applied to
 * `state`. Leaves remove the metas of their refs, then joins add theirs (replacing a
 * meta of the same ref), so a meta update keeps its member: its leave has `last:
 * false` and its join `first: false`. A leave of a ref that is not there and a join
 * of a meta that already is change nothing and are not reported, so a diff applied
 * twice is harmless. A key left without metas is removed. Callbacks as syncState's.
 * @param {object} state @param {{joins?: object, leaves?: object}} diff
 * @param {Function} [onJoin] @param {Function} [onLeave] @returns {object}
 */
export function syncDiff(state, diff, onJoin, onLeave) {
  const before = isObject(state) ? state : {};
  const next = { ...before };
  const left = [];
  const joined = [];
  for (const [key, member] of Object.entries(isObject(diff?.leaves) ? diff.leaves : {})) {
    const current = own(next, key);
    const refs = new Set(metasOf(member).map((meta) => meta.ref));
    const gone = metasOf(current).filter((meta) => refs.has(meta.ref));
    if (!gone.length) continue;
    const info = current.info ?? member.info ?? {};
    put(next, key, { info, metas: metasOf(current).filter((meta) => !refs.has(meta.ref)) });
    left.push([key, { info, metas: gone }]);
  }
  for (const [key, member] of Object.entries(isObject(diff?.joins) ? diff.joins : {})) {
    const current = own(next, key);
    const metas = metasOf(member).filter((meta) => !holds(metasOf(current), meta));
    if (!metas.length) continue;
    const refs = new Set(metas.map((meta) => meta.ref));
    const info = member.info ?? current?.info ?? {};
    put(next, key, { info, metas: [...metasOf(current).filter((meta) => !refs.has(meta.ref)), ...metas] });
    joined.push([key, { info, metas }]);
  }
  for (const key of Object.keys(next)) if (!metasOf(next[key]).length) delete next[key];
  tell(before, next, joined, left, onJoin, onLeave);
  return next;
}

/**
 * Why `meta` cannot be a presence meta, or null: the server takes an object of at most
 * MAX_META_BYTES bytes of JSON, without "ref". Checked here too, because over SSE a
 * meta the server refuses would refuse the whole stream's topic.
 */
function metaProblem(meta) {
  if (!isObject(meta)) return "a presence meta must be an object";
  let copy;
  try { copy = JSON.parse(JSON.stringify(meta)); } catch (error) { return `a presence meta must be JSON (${describe(error)})`; }
  if (Object.hasOwn(copy, "ref")) return "a presence meta cannot hold 'ref': the server sets it";
  if (pythonJsonLength(copy) > MAX_META_BYTES) return `a presence meta is at most ${MAX_META_BYTES} bytes of JSON`;
  return null;
}

/** A copy of `meta` (as JSON), or a TypeError. */
function presenceMeta(meta) {
  const problem = metaProblem(meta);
  if (problem) throw new TypeError(`tidings: ${problem}`);
  return JSON.parse(JSON.stringify(meta));
}

/** About the length of Python's json.dumps(value), which the server measures metas with. */
function pythonJsonLength(value) {
  if (Array.isArray(value)) {
    return 2 + value.reduce((sum, item) => sum + pythonJsonLength(item), 0) + 2 * Math.max(0, value.length - 1);
  }
  if (isObject(value)) {
    const entries = Object.entries(value);
    return 2 + entries.reduce((sum, [key, item]) => sum + pythonJsonLength(key) + 2 + pythonJsonLength(item), 0)
      + 2 * Math.max(0, entries.length - 1);
  }
  const text = JSON.stringify(value) ?? "null";
  // ensure_ascii: every UTF-16 unit past ASCII becomes \uXXXX (6 characters).
  let wide = 0;
  for (let i = 0; i < text.length; i += 1) if (text.charCodeAt(i) > 0x7f) wide += 1;
  return text.length + 5 * wide;
}

/**
 * One topic's presence as this client knows it (shared by the Subscriptions of the
 * topic). Diffs that arrive before the state are kept until it comes; each state
 * (the first, or one after a reconnect) replaces what was known. The transports
 * reset() it whenever they (re)subscribe: a WebSocket subscribe, an HTTP run.
 */
class Roster {
  constructor() {
    this.state = {};
    /** key -> {info, metas}, sorted by key; the same Map for the topic's lifetime. */
    this.members = new Map();
    this.counts = null;          // the server's counts, on counts-only topics
    this.synced = false;         // a state came since the last (re)connect
    this.pending = [];           // diffs that came before it
  }

  /** A new connection (or stream, or run of polls): wait for its state. */
  reset() {
    this.synced = false;
    this.pending = [];
  }

  get count() {
    if (this.counts) return { ...this.counts };
    let connections = 0;
    for (const member of this.members.values()) connections += member.metas.length;
    return { members: this.members.size, connections };
  }

  /** A presence or presence_diff frame; `emit(name, ...args)` tells the Subscriptions. */
  apply(frame, emit) {
    if (frame.op === "presence") {
      if (!this._sync(frame, emit)) return;
      const pending = this.pending;
      this.pending = [];
      for (const diff of pending) this._diff(diff, emit);
    } else if (frame.op === "presence_diff") {
      if (this.synced) this._diff(frame, emit);
      else this.pending.push(frame);
    }
  }

  _sync(frame, emit) {
    const events = [];
    const collect = (name) => (...args) => events.push([name, ...args]);
    let counts = null;
    let next;
    if (isObject(frame.count)) {
      counts = { members: frame.count.members, connections: frame.count.connections };
      next = syncState(this.state, {}, collect("join"), collect("leave"));
    } else if (isObject(frame.state)) {
      next = syncState(this.state, frame.state, collect("join"), collect("leave"));
    } else {
      return false;                              // not a state: ignore it
    }
    const first = !this.synced;
    this.synced = true;
    // Long-poll sends the whole state with every answer: an unchanged one says nothing.
    if (!first && !events.length && sameJson(counts, this.counts)) return true;
    this.counts = counts;
    this._set(next);
    for (const event of events) emit(...event);
    emit("sync", this.members);
    emit("change", this.members);
    return true;
  }

  _diff(frame, emit) {
    if (isObject(frame.count)) {
      const counts = { members: frame.count.members, connections: frame.count.connections };
      if (sameJson(counts, this.counts)) return;
      this.counts = counts;
      emit("change", this.members);
      return;
    }
    const events = [];
    const collect = (name) => (...args) => events.push([name, ...args]);
    const next = syncDiff(this.state, frame, collect("join"), collect("leave"));
    if (!events.length) return;
    this._set(next);
    for (const event of events) emit(...event);
    emit("change", this.members);
  }

  _set(state) {
    this.state = state;
    this.members.clear();
    for (const key of Object.keys(state).sort(byString)) this.members.set(key, state[key]);
  }
}

function byString(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `subscription.presence`: who is on the subscription's topic, when it subscribed with
 * `presence` (a Subscription without it sees its topic's presence if another
 * Subscription of the same topic asked for it; else nothing).
 *
 * Events (`on(name, fn)`):
 * - "sync" (members): a whole state arrived (after subscribing, after each reconnect);
 * - "join" (key, joined, {first, current}): metas joined; `joined` is {info, metas:
 *   the metas that joined}; `first`: the key was not present before; `current`: the
 *   member now;
 * - "leave" (key, left, {last, current}): metas left; `last`: the key has no metas left
 *   (then `current` is undefined);
 * - "change" (members): after every state or diff that changed something, and after
 *   each state. The one most apps need.
 * A meta update is a leave and a join of the same ref (last and first false).
 */
export class Presence extends Emitter {
  /** @internal Made with its Subscription. */
  constructor(subscription) {
    super();
    this._sub = subscription;
  }

  /** The topic's Roster, if this Subscription is active and its topic's presence watched. */
  get _roster() {
    const sub = this._sub;
    return sub.active && sub._entry.watch != null ? sub._entry.roster : null;
  }

  /** @type {Map<string, {info: object, metas: object[]}>} Key -> member, sorted by key; empty when not watching. */
  get members() {
    return this._roster?.members ?? new Map();
  }

  /** @type {{members: number, connections: number}} The server's, on counts-only topics. */
  get count() {
    return this._roster?.count ?? { members: 0, connections: 0 };
  }

  /** @returns {Array<{key: string, info: object, metas: object[]}>} The members, sorted by key. */
  list() {
    return [...this.members].map(([key, member]) => ({ key, info: member.info, metas: member.metas }));
  }

  /**
   * Track this connection on the topic with `meta` from now on (it was tracked with
   * the meta given to subscribe(), or only watched, or not even that). Resolves (with
   * nothing) once the server has it: over WebSocket on the reply to a `presence` op
   * (or to a new subscribe, if this connection was not tracked); over SSE once the
   * stream restarted with the new meta (the old entry leaves, the new one joins).
   * Rejects with a TidingsError: "unsupported" over long-polling (a poller is not
   * tracked), "bad_request" for a meta the server would refuse, "timeout", "closed",
   * "unsubscribed", or the server's error.
   * @param {object} meta @returns {Promise<void>}
   */
  update(meta) {
    const sub = this._sub;
    if (!sub.active) return Promise.reject(new TidingsError("unsubscribed", `not subscribed to '${sub.topic}'`));
    return sub._client._updatePresence(sub._entry, meta);
  }
}

/**
 * One `client.subscribe()` call. Several Subscriptions to one topic share one server
 * subscription (a "topic entry" inside the client) and so share `position`.
 *
 * Events: "subscribed" (the reply, after the first subscribe and after every
 * resubscribe on reconnect: check `reply.recovered` to know if anything was lost),
 * "gap" (the reply, when a resume could not replay everything missed: the history
 * window was exceeded or the server lost it; refetch your state), "error" (a
 * TidingsError: the server refused the subscription, which is now over).
 *
 * `presence` (a Presence) is who is on the topic, when subscribed with `presence`.
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
    /** @type {Presence} Who is on the topic: see Presence. */
    this.presence = new Presence(this);
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
    if (reply.recovered === false) this._emit("gap", reply);
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
    this._kinds = this._usableTransports(options.transports ?? TRANSPORTS);
    this._backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this._timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this._pollTimeout = options.pollTimeout ?? DEFAULT_POLL_TIMEOUT;
    this._state = "closed";
    this._transport = null;      // the current transport object, null between connections
    this._link = null;           // what the client knows of it: {name, transport, opened}
    this._transportName = null;  // the name of the last transport started
    this._kind = 0;              // the index in _kinds of the transport to use
    this._proven = new Set();    // names of the transports that connected once
    this._failedReopens = 0;     // reopens in a row of a proven transport that failed
    this._timer = null;          // the pending reconnect
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
    if (this._transport) return;
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
    const link = { name, transport: null, opened: false };
    const Transport = this._transportClass(name);
    const transport = new Transport(this._transportSettings(), this._transportCallbacks(link));
    link.transport = transport;
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
        if (error) reject(error);
        else resolve(reply);
      };
      // (setTimeout would turn Infinity into 1 ms.)
      const timer = Number.isFinite(this._timeout) ? setTimeout(
        () => request.settle(new TidingsError("timeout", `no reply within ${this._timeout} ms`)),
        this._timeout,
      ) : null;
      this._unsent.push(request);
      this._flush();
    });
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

  // --- transports ---------------------------------------------------------------

  /** The names in `wanted` that can run here (their constructor or fetch exists). */
  _usableTransports(wanted) {
    for (const name of wanted) {
      if (!TRANSPORTS.includes(name)) throw new TypeError(`tidings: unknown transport '${name}'`);
    }
    const usable = [...new Set(wanted)].filter((name) => (
      name === "websocket" ? typeof this._io.WebSocket === "function"
        : !this.baseUrl ? false
          : name === "sse" ? this._streamingFetch() || typeof this._io.EventSource === "function"
            : typeof this._io.fetch === "function"
    ));
    if (!usable.length) {
      throw new TypeError(`tidings: none of the transports ${wanted.join(", ")} can run here; `
        + "pass options.WebSocket, options.EventSource or options.fetch");
    }
    return usable;
  }

  _streamingFetch() {
    return typeof this._io.fetch === "function" && typeof globalThis.TextDecoder === "function";
  }

  _transportClass(name) {
    if (name === "websocket") return WebSocketTransport;
    if (name === "longpoll") return LongPollTransport;
    return this._streamingFetch() ? SseTransport : EventSourceTransport;
  }

  /**
   * What a new transport gets to read: a snapshot of the options it needs (see
   * "the transport interface" below).
   */
  _transportSettings() {
    return Object.freeze({
      url: this.url, baseUrl: this.baseUrl, ...this._io, timeout: this._timeout, pollTimeout: this._pollTimeout,
    });
  }

  /**
   * The callbacks and accessors a transport may use, and nothing else of the client:
   * see "the transport interface" below. `link` is the transport's {name, transport,
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
    this._link = null;
    this._transport = null;
    const reconnect = !this._closed && !NO_RECONNECT.has(code);
    if (!this._closed) this._state = reconnect ? "connecting" : "closed";
    if (!reconnect) {                            // nothing will send them
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
    const { initial, max, factor, jitter } = this._backoff;
    const delay = Math.min(max, initial * factor ** this._attempt) * (1 - jitter * Math.random());
    this._attempt += 1;
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) this.open();
    }, delay);
    this._emit("reconnecting", { attempt: this._attempt, delay });
  }
}

// --- transports ----------------------------------------------------------------
//
// The Client knows the topics, their positions, the requests, and when to reconnect;
// a transport knows how to talk to the server. One transport object serves one
// connection (like one WebSocket): once it reports closed, the Client makes a new one.
// A transport sees nothing of the Client but what it is given:
//
//   new Transport(settings, callbacks)
//
// `settings` (frozen, taken when the transport is made): url (the WebSocket url),
// baseUrl (of the HTTP endpoints), WebSocket, EventSource, fetch (what to connect
// with; null where there is none), cookie() (where the csrftoken cookie is), timeout
// (ms a request waits for its reply, and an SSE stream for its first event),
// pollTimeout (s a long poll may be held).
//
// The client calls the transport's methods:
//   open()            start connecting
//   add(entry)        a topic was subscribed
//   remove(topic)     a topic's last Subscription went
//   refresh()         a Subscription declared new event names
//   presence(entry)   the presence asked for on a topic changed (entry.watch, version)
//   request(request)  send a publish or ping, {frame, settle(error, reply), done,
//                     cancel}: the transport may set `cancel` (called once the request
//                     is settled: forget the reply, abort the fetch); only called once open
//   close()           the client closes for good; the transport still reports onClose
//
// A topic *entry* is read-only to a transport: {topic, position (the last seen, or
// null), events (a Set of event names), watch (the presence asked for: null, true or
// a meta), version (of watch), initial (a model feed's snapshot is wanted)}.
//
// `callbacks` are all a transport may call (each one bound to this transport):
//   entries()                 the topic entries now subscribed, in subscription order
//   entry(topic)              the entry of `topic` now, or undefined if unsubscribed
//   backingOff()              whether the client reconnects after a failure (then some
//                             round trip must succeed to reset the backoff)
//   nextId()                  a fresh WebSocket frame id, unique for the client's life
//   inOrder(task)             run `task()` (it returns a promise) once the tasks given
//                             before it, by this transport or an earlier one, settled
//   onOpen()                  connected: the client sends its unsent requests
//   onClose({code, reason})   once, when over (closed, failed, or never connected)
//   onProven()                the server answered: this transport works here
//   onRoundTrip()             the server answered a request: reset the backoff
//   onSubscribing(entry)      the topic is (re)subscribed: its presence state follows anew
//   onSubscribeReply(entry, reply)  {ok: true, topic, position, recovered?} or an error
//   onMessage(message)        {op: "message", topic, position, event, data}
//   onSnapshot(frame)         {op: "snapshot", topic, position, rows}
//   onPresence(frame)         a presence state or diff (docs/protocol.md, "Presence")
//   onPresenceSettled(entry, version, error?)  the server has the topic's presence as of
//                             `version` (or refused it: `error`)
//   onError(error)            a TidingsError that answers no request: the "error" event

/** The WebSocket transport: the protocol of docs/protocol.md, on one socket. */
class WebSocketTransport {
  constructor(settings, callbacks) {
    this._settings = settings;
    this._callbacks = callbacks;
    this._ws = null;
    this._open = false;
    this._closing = false;       // close() was called: frames are ignored
    this._over = false;          // reported closed: the socket's events are ignored
    this._pending = new Map();   // id -> {onReply(reply), onLost(error)} for sent frames
    this._sent = new Map();      // topic entry -> the presence its last subscribe asked for
  }

  open() {
    const ws = new this._settings.WebSocket(this._settings.url);
    this._ws = ws;
    ws.onopen = () => this._onOpen();
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = (event) => this._onClose(event);
    ws.onerror = () => {
      if (!this._over) this._callbacks.onError(new TidingsError("transport", "WebSocket error"));
    };
  }

  close() {
    // The socket's close event reports the close; its frames are ignored meanwhile.
    this._closing = true;
    this._ws?.close(1000);
  }

  add(entry) {
    if (this._open) this._subscribe(entry);
  }

  remove(topic) {
    if (this._open) this._send({ op: "unsubscribe", topic }, IGNORE);
  }

  refresh() {}

  /**
   * A topic tracked with a meta gets the new meta with a `presence` op (the server
   * handles it after the subscribe, even one still on its way). Otherwise the topic
   * is subscribed anew, with `since` its position, so no message is lost.
   */
  presence(entry) {
    if (!this._open) return;                     // the subscribe on open asks for it
    if (isObject(this._sent.get(entry)) && isObject(entry.watch)) {
      const { version, watch: meta } = entry;
      this._sent.set(entry, meta);
      this._send({ op: "presence", topic: entry.topic, meta }, {
        onReply: (reply) => this._callbacks.onPresenceSettled(entry, version, reply.ok ? null : errorFromReply(reply)),
        onLost() {},                             // the next socket subscribes with the meta
      });
    } else {
      this._send({ op: "unsubscribe", topic: entry.topic }, IGNORE);
      this._subscribe(entry);
    }
  }

  request(request) {
    const id = this._send(request.frame, {
      onReply: (reply) => (reply.ok ? request.settle(null, reply) : request.settle(errorFromReply(reply))),
      onLost: (error) => request.settle(error),
    });
    request.cancel = () => this._pending.delete(id);
  }

  /** Send one frame with a fresh id; `handlers.onReply` gets its reply. */
  _send(frame, handlers) {
    const id = this._callbacks.nextId();
    this._pending.set(id, handlers);
    this._ws.send(JSON.stringify({ id, ...frame }));
    return id;
  }

  _subscribe(entry) {
    const callbacks = this._callbacks;
    const frame = { op: "subscribe", topic: entry.topic };
    if (entry.position != null) frame.since = entry.position;
    if (entry.watch !== null) frame.presence = entry.watch;
    if (entry.initial) frame.initial = true;
    const { version } = entry;
    this._sent.set(entry, entry.watch);
    callbacks.onSubscribing(entry);              // its presence state follows the reply
    // A lost subscribe is not an error: the next socket subscribes again.
    this._send(frame, {
      onReply: (reply) => {
        callbacks.onSubscribeReply(entry, reply);
        if (reply.ok && entry.watch !== null) callbacks.onPresenceSettled(entry, version);
      },
      onLost() {},
    });
  }

  _onOpen() {
    if (this._over) return;
    const callbacks = this._callbacks;
    this._open = true;
    callbacks.onProven();
    const entries = callbacks.entries();
    for (const entry of entries) this._subscribe(entry);
    // After a reconnect, some round trip must succeed to reset the backoff.
    if (callbacks.backingOff() && entries.length === 0) this._send({ op: "ping" }, IGNORE);
    callbacks.onOpen();
  }

  _onFrame(data) {
    const callbacks = this._callbacks;
    if (this._over || this._closing) return;
    let frame;
    try { frame = JSON.parse(data); } catch { frame = null; }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      callbacks.onError(new TidingsError("bad_frame", "the server sent a frame that is not a JSON object"));
      return;
    }
    if (frame.op === "message") return callbacks.onMessage(frame);
    if (frame.op === "snapshot" && !("id" in frame)) return callbacks.onSnapshot(frame);
    if ((frame.op === "presence" || frame.op === "presence_diff") && !("id" in frame)) {
      return callbacks.onPresence(frame);
    }
    if (!("id" in frame)) return;                // an unknown kind of frame: ignore
    if (frame.id === null) {                     // an error that answers no request
      if (frame.ok === false) callbacks.onError(errorFromReply(frame));
      return;
    }
    const handlers = this._pending.get(frame.id);
    if (!handlers) return;                       // e.g. the reply to a timed-out request
    this._pending.delete(frame.id);
    if (frame.ok) callbacks.onRoundTrip();       // the server answers: stop backing off
    handlers.onReply(frame);
  }

  _onClose({ code, reason }) {
    if (this._over) return;
    this._over = true;
    this._open = false;
    const error = new TidingsError("disconnected", `the connection closed (${code}) before the reply`);
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const handlers of pending) handlers.onLost(error);
    this._callbacks.onClose({ code, reason });
  }
}

/**
 * What SSE and long-poll share: one HTTP request (or loop of requests) at a time for
 * the client's current set of topics, a "run", restarted with the cursor of the known
 * positions whenever that set changes; error replies that refuse topics; publishing
 * over `POST <baseUrl>publish`.
 *
 * A *cursor* (docs of tidings.transports.http) is the positions of the run's topics,
 * comma-separated in the order of its `topic` parameters; an empty part: no position.
 */
class HttpTransport {
  constructor(settings, callbacks) {
    this._settings = settings;
    this._callbacks = callbacks;
    this._run = null;            // {topics, key, cursor, controller, ...}; null when idle
    this._opened = false;        // told the client it is open
    this._over = false;          // reported closed
    this._queued = false;        // a (re)start waits for the end of this task
    this._announced = new Set(); // topic entries whose subscribe reply this transport gave
  }

  open() { this._restartSoon(); }

  add() { this._restartSoon(); }

  remove() { this._restartSoon(); }

  refresh() { this._restartSoon(); }

  presence() { this._restartSoon(); }

  close() {
    if (this._over) return;
    this._stop();
    this._over = true;
    this._callbacks.onClose({ code: 1000, reason: "" });
  }

  request(request) {
    if (request.frame.op === "ping") return request.settle(null, { ok: true });
    // One at a time, as on a WebSocket: two POSTs at once could reach the topic's
    // handler in the other order. One settled while waiting (timeout, close()) is not sent.
    const settings = this._settings;
    this._callbacks.inOrder(() => (request.done ? null : publishOverHttp(settings, request)));
  }

  /**
   * `${baseUrl}${path}?topic=..&topic=..[&since=<cursor>][&timeout=..][&presence=..]`
   * for `run`; `presence`: a Map topic -> true or a meta, sent as a JSON object.
   */
  _url(path, { topics, cursor, presence }, timeout) {
    const params = new URLSearchParams();
    for (const topic of topics) params.append("topic", topic);
    if (cursor.some((part) => part)) params.set("since", cursor.join(","));
    if (timeout !== undefined) params.set("timeout", String(timeout));
    if (presence?.size) params.set("presence", JSON.stringify(Object.fromEntries(presence)));
    return `${this._settings.baseUrl}${path}?${params}`;
  }

  /** fetch() with the client's cookies, never from the cache. */
  _get(url, accept, signal) {
    return this._settings.fetch(url, { headers: { Accept: accept }, credentials: "same-origin", cache: "no-store", signal });
  }

  /** What identifies a run: restarting is needed when it changes. */
  _key(topics, presence) {
    return `${topics.join("\n")}\n\n${JSON.stringify([...presence])}`;
  }

  /** The run's `presence` parameter: topic -> true (watch) or the meta to be tracked with. */
  _presence(topics) {
    const presence = new Map();
    for (const topic of topics) {
      const { watch } = this._callbacks.entry(topic);
      if (watch !== null) presence.set(topic, watch);
    }
    return presence;
  }

  /**
   * Start a run for the client's topics, at the end of this task: several subscribes
   * in a row make one request. With no topics there is nothing to ask the server, but
   * publishing works: the transport counts as open.
   */
  _restartSoon() {
    if (this._queued || this._over) return;
    this._queued = true;
    queueMicrotask(() => {
      this._queued = false;
      if (this._over) return;
      const callbacks = this._callbacks;
      const topics = callbacks.entries().map((entry) => entry.topic);
      const presence = this._presence(topics);
      const key = this._key(topics, presence);
      if (this._run?.key === key) return;        // the request in flight is the right one
      this._stop();
      if (!topics.length) return this._up();
      const cursor = topics.map((topic) => callbacks.entry(topic).position ?? "");
      // Each topic's presence version, to settle its updates once the server has it.
      const versions = new Map();
      for (const topic of presence.keys()) {
        const entry = callbacks.entry(topic);
        versions.set(topic, entry.version);
        callbacks.onSubscribing(entry);          // the new run begins with a whole state
      }
      const run = { topics, key, cursor, presence, versions, controller: new AbortController(), timer: null };
      this._run = run;
      try {
        Promise.resolve(this._connect(run)).catch((error) => this._fail(run, 1006, describe(error)));
      } catch (error) {                          // e.g. the EventSource constructor threw
        this._fail(run, 1006, describe(error));
      }
    });
  }

  /** Abort the current run, if any. Its callbacks check `run === this._run` and stop. */
  _stop() {
    const run = this._run;
    if (!run) return;
    this._run = null;
    clearTimeout(run.timer);
    run.controller.abort();
  }

  _up() {
    if (this._opened) return;
    this._opened = true;
    this._callbacks.onOpen();
  }

  /** The run failed (network error, the stream ended, a 5xx...): this transport is over. */
  _fail(run, code, reason) {
    if (run !== this._run || this._over) return;
    this._stop();
    this._over = true;
    this._callbacks.onClose({ code, reason });
  }

  /** The server answered the run: it works here. `topics` is its `{topic: {position, recovered?}}`. */
  _answered(run, topics) {
    const callbacks = this._callbacks;
    callbacks.onProven();
    callbacks.onRoundTrip();
    this._up();
    this._announce(run, topics);
    for (const [topic, version] of run.versions) {
      const entry = callbacks.entry(topic);
      if (entry) callbacks.onPresenceSettled(entry, version);
    }
  }

  /**
   * Give each topic its subscribe reply, once per transport, and again whenever the
   * server says it could not resume (`recovered: false`: messages were lost).
   */
  _announce(run, topics) {
    const callbacks = this._callbacks;
    run.topics.forEach((topic, i) => {
      const info = topics?.[topic];
      const entry = callbacks.entry(topic);
      if (run !== this._run || !entry || !info || typeof info !== "object") return;
      const reply = { ok: true, topic, position: info.position };
      // The server says whether it resumed every topic, even those sent without a
      // position; as over WebSocket, `recovered` only answers a `since`.
      if (run.cursor[i] && "recovered" in info) reply.recovered = info.recovered;
      if (this._announced.has(entry) && reply.recovered !== false) return;
      this._announced.add(entry);
      callbacks.onSubscribeReply(entry, reply);
    });
  }

  /**
   * An error status. `{ok: false, error}` with forbidden / invalid_topic / bad_request
   * refuses topics: their Subscriptions fail and the others go on without them.
   * Anything else (a 5xx, a proxy's page, a 404: no such endpoint) is a failure.
   */
  async _refused(run, response) {
    let body;
    try { body = await response.json(); } catch { body = undefined; }
    if (run !== this._run) return;
    const error = body?.error;
    if (!((response.status === 400 || response.status === 403) && REFUSALS.has(error?.code))) {
      return this._fail(run, 1006, `HTTP ${response.status}${error?.code ? ` ${error.code}` : ""}`);
    }
    this._stop();
    const callbacks = this._callbacks;
    for (const topic of refusedTopics(error, run.topics)) {
      const entry = callbacks.entry(topic);
      if (entry) callbacks.onSubscribeReply(entry, { ok: false, error });
    }
    this._restartSoon();                         // with the topics left
  }
}

/**
 * The topics of `topics` that an error reply refuses: the one it names (the server
 * names it in `message`, quoted, cut at 80 characters), or else all of them.
 */
function refusedTopics(error, topics) {
  if (typeof error.topic === "string" && topics.includes(error.topic)) return [error.topic];
  const quoted = /'([^']+)'/.exec(String(error.message ?? ""))?.[1];
  const named = topics.filter((topic) => topic === quoted || (quoted?.length >= 80 && topic.startsWith(quoted)));
  return named.length === 1 ? named : topics;
}

/** The value of the `csrftoken` cookie (Django's CSRF token), or null. */
function csrfToken(cookie) {
  for (const pair of String(cookie ?? "").split(";")) {
    const [name, ...value] = pair.trim().split("=");
    if (name === "csrftoken") {
      try { return decodeURIComponent(value.join("=")); } catch { return value.join("="); }
    }
  }
  return null;
}

/** `POST <baseUrl>publish {topic, data, event?}`; settles `request` like a WebSocket reply. Never rejects. */
async function publishOverHttp(settings, request) {
  if (typeof settings.fetch !== "function") {
    return request.settle(new TidingsError("transport", "no fetch here to publish with"));
  }
  const { op, ...body } = request.frame;
  const controller = new AbortController();
  request.cancel = () => controller.abort();
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  let token = null;
  try { token = csrfToken(settings.cookie()); } catch (error) { report(error); }
  if (token) headers["X-CSRFToken"] = token;
  let response;
  try {
    response = await settings.fetch(`${settings.baseUrl}publish`, {
      method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin",
      cache: "no-store", signal: controller.signal,
    });
  } catch (error) {
    return request.settle(new TidingsError("disconnected", `the publish failed: ${describe(error)}`));
  }
  let reply;
  try { reply = await response.json(); } catch { reply = undefined; }
  if (reply === null || typeof reply !== "object" || typeof reply.ok !== "boolean") {
    return request.settle(new TidingsError("transport", `the server answered HTTP ${response.status}`));
  }
  if (reply.ok) request.settle(null, reply);
  else request.settle(errorFromReply(reply));
}

/**
 * Server-Sent Events, `GET <baseUrl>sse?topic=a&topic=b[&since=<cursor>]`, read with
 * fetch() and a small parser rather than EventSource, because:
 * - EventSource dispatches a named event only to listeners of that name, and app
 *   event names are open-ended: the parser sees every event;
 * - fetch shows the status and JSON body of a refusal (EventSource only says "error"),
 *   so a forbidden topic fails its Subscription instead of retrying for ever;
 * - the client decides when and from where to reconnect (backoff, falling back to
 *   long-poll, resuming with `since` after a change of topics).
 *
 * The stream begins with `event: tidings.open` (`id:` the cursor; data: where each
 * topic stands). Each message event has the cursor after it as `id:` and the message
 * data only: its topic is the part of the cursor that changed. `event: tidings.close`
 * without an `id:` means the server dropped the stream. With a `presence` parameter
 * (topic -> true or a meta), `tidings.presence` and `tidings.presence_diff` events
 * (no `id:`) carry the presence frames of docs/protocol.md.
 */
class SseTransport extends HttpTransport {
  async _connect(run) {
    this._expectOpen(run);
    let response;
    try {
      // `since` rather than a Last-Event-ID header: that would need a CORS preflight.
      response = await this._get(this._url("sse", run), "text/event-stream", run.controller.signal);
    } catch (error) {
      return this._fail(run, 1006, describe(error));
    }
    if (run !== this._run) return;
    if (!response.ok) return this._refused(run, response);
    const type = response.headers.get("Content-Type") ?? "";
    if (!/^text\/event-stream/i.test(type) || typeof response.body?.getReader !== "function") {
      return this._fail(run, 1006, `not an event stream (${type || "no Content-Type"})`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new EventStreamParser((event) => { if (run === this._run) this._onEvent(run, event); });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || run !== this._run) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      return this._fail(run, 1006, describe(error));
    }
    if (run === this._run) this._fail(run, 1006, "the stream ended");
    else reader.cancel().catch(() => {});
  }

  /** A stream that says nothing (a buffering proxy) counts as failed after `timeout`. */
  _expectOpen(run) {
    const { timeout } = this._settings;
    if (Number.isFinite(timeout)) {
      run.timer = setTimeout(() => this._fail(run, 1006, `no tidings.open within ${timeout} ms`), timeout);
    }
  }

  /** One event `{type, data, lastEventId}` of the run's stream. */
  _onEvent(run, { type, data, lastEventId }) {
    const callbacks = this._callbacks;
    if (!run.parts) {                            // the stream's first event
      if (type !== "tidings.open") return this._fail(run, 1006, "the stream did not begin with tidings.open");
      clearTimeout(run.timer);
      run.parts = lastEventId.split(",");
      return this._answered(run, parseJson(data)?.topics);
    }
    if (type === "tidings.presence" || type === "tidings.presence_diff") {
      // The frame of docs/protocol.md; no `id:`, so the cursor does not move.
      const frame = parseJson(data);
      if (!isObject(frame) || !run.presence.has(frame.topic)) {
        callbacks.onError(new TidingsError("bad_frame", `the server sent a ${type} event that cannot be read`));
        return;
      }
      callbacks.onPresence({ ...frame, op: type.slice("tidings.".length) });
      return;
    }
    const parts = lastEventId.split(",");
    const changed = run.topics.map((_, i) => i).filter((i) => parts[i] !== run.parts[i]);
    if (!changed.length) {
      // The server's tidings.close carries no id; a message always moves the cursor.
      if (type === "tidings.close") {
        const { code, reason } = parseJson(data) ?? {};
        this._fail(run, Number.isInteger(code) ? code : 1006, String(reason ?? ""));
      }
      return;                                    // else: seen already
    }
    run.parts = parts;
    const message = parseJson(data);
    if (changed.length !== 1 || parts.length !== run.topics.length || message === undefined) {
      callbacks.onError(new TidingsError("bad_frame", `the server sent an SSE event that cannot be read (id ${lastEventId})`));
      return;
    }
    const i = changed[0];
    callbacks.onMessage({ op: "message", topic: run.topics[i], position: parts[i], event: type, data: message });
  }
}

/**
 * SSE with the browser's EventSource, only where fetch cannot stream. It hears only
 * the event names it listens to: "message" and those given in subscribe()'s `events`.
 * A refusal is only "error" to it, as is a network failure: both close this transport.
 */
class EventSourceTransport extends SseTransport {
  _key(topics, presence) {
    return `${super._key(topics, presence)}\n\n${[...this._eventNames()].join("\n")}`;
  }

  _eventNames() {
    const names = new Set(["tidings.open", "tidings.close", "message"]);
    for (const entry of this._callbacks.entries()) {
      for (const name of entry.events) names.add(name);
      if (entry.watch !== null) names.add("tidings.presence").add("tidings.presence_diff");
    }
    return names;
  }

  _connect(run) {
    this._expectOpen(run);
    const source = new this._settings.EventSource(this._url("sse", run));
    run.controller.signal.addEventListener("abort", () => source.close());
    for (const type of this._eventNames()) {
      source.addEventListener(type, (event) => {
        if (run === this._run) this._onEvent(run, { type, data: event.data, lastEventId: event.lastEventId ?? "" });
      });
    }
    // EventSource would reconnect by itself, but without our backoff and cursor.
    source.onerror = () => this._fail(run, 1006, "EventSource error");
  }
}

/**
 * Long-polling, `GET <baseUrl>poll?topic=..[&since=<cursor>]&timeout=<s>`: each answer
 * is `{messages, since, topics}`; the next poll goes at once with the `since` returned.
 * The first poll of a run has timeout=0, so subscriptions are ready without waiting.
 * With a `presence` parameter, each answer also has `presence: {topic: {state} or
 * {count}}`, the whole state each time: the Roster turns it into joins and leaves.
 * A poller is not connected between polls, so it only watches: it asks `true`.
 */
class LongPollTransport extends HttpTransport {
  _presence(topics) {
    const presence = super._presence(topics);
    for (const topic of presence.keys()) presence.set(topic, true);
    return presence;
  }

  async _connect(run) {
    const callbacks = this._callbacks;
    let timeout = 0;
    for (;;) {
      let response;
      let body;
      try {
        response = await this._get(this._url("poll", run, timeout), "application/json", run.controller.signal);
        if (run !== this._run) return;
        if (!response.ok) return this._refused(run, response);
        body = await response.json();
      } catch (error) {
        return this._fail(run, 1006, describe(error));
      }
      if (run !== this._run) return;
      if (body === null || typeof body !== "object" || !Array.isArray(body.messages) || typeof body.since !== "string") {
        return this._fail(run, 1006, "the server sent a poll answer that cannot be read");
      }
      if (timeout === 0) this._answered(run, body.topics);
      else this._announce(run, body.topics);
      const snapshots = isObject(body.presence) ? body.presence : {};
      for (const topic of run.presence.keys()) {
        const snapshot = own(snapshots, topic);
        if (run !== this._run) return;           // a listener changed the topics
        if (isObject(snapshot)) callbacks.onPresence({ op: "presence", topic, state: snapshot.state, count: snapshot.count });
      }
      for (const message of body.messages) {
        if (run !== this._run) return;           // a callback changed the topics
        callbacks.onMessage(message);
      }
      run.cursor = body.since.split(",");
      timeout = this._settings.pollTimeout;
    }
  }
}

/**
 * An incremental parser of `text/event-stream` (the WHATWG rules): lines end with
 * CRLF, LF or CR; `field: value` (one space after the colon is dropped); lines that
 * begin with ":" are comments (keep-alives); a blank line dispatches the event if it
 * has data. `data` lines join with "\n"; `id` persists as `lastEventId`.
 */
class EventStreamParser {
  /** @param {(event: {type: string, data: string, lastEventId: string}) => void} onEvent */
  constructor(onEvent) {
    this._onEvent = onEvent;
    this._buffer = "";
    this._start = true;          // a BOM may begin the stream
    this._type = "";
    this._data = [];
    this.lastEventId = "";
    this.retry = null;           // the server's reconnect delay; the client keeps its own
  }

  /** Feed decoded text, any amount, cut anywhere. */
  push(text) {
    text = this._buffer + text;
    if (this._start && text) {
      this._start = false;
      if (text[0] === "\uFEFF") text = text.slice(1);
    }
    // A final CR may be half of a CRLF: keep it for the next chunk.
    const end = text.endsWith("\r") ? text.length - 1 : text.length;
    const lines = text.slice(0, end).split(/\r\n|\r|\n/);
    this._buffer = lines.pop() + text.slice(end);
    for (const line of lines) this._line(line);
  }

  _line(line) {
    if (line === "") return this._dispatch();
    if (line[0] === ":") return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this._type = value;
    else if (field === "data") this._data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  _dispatch() {
    const type = this._type || "message";
    const data = this._data.join("\n");
    const hasData = this._data.length > 0;
    this._type = "";
    this._data = [];
    if (hasData) this._onEvent({ type, data, lastEventId: this.lastEventId });
  }
}

// --- options ---------------------------------------------------------------------

/** `options[name]` if given (null: none), else the global of that name. */
function option(options, name) {
  if (options[name] !== undefined) return options[name];
  const value = globalThis[name];
  // (A browser's fetch must be called on the window.)
  return name === "fetch" && typeof value === "function" ? value.bind(globalThis) : value;
}

/** ws(s): <-> http(s): */
function withScheme(url, secure, ws) {
  const resolved = new URL(url);
  resolved.protocol = ws ? (secure ? "wss:" : "ws:") : (secure ? "https:" : "http:");
  return resolved.href;
}

/**
 * The WebSocket url and the base url of the HTTP endpoints. In a browser, relative
 * urls resolve against the page and both default to /realtime/ on this host. Each
 * is derived from the other when only one is given: ws(s)://h/p/ws <-> http(s)://h/p/.
 */
function resolveUrls(url, baseUrl) {
  const location = globalThis.location;
  if (baseUrl != null && baseUrl !== "") {
    baseUrl = String(baseUrl);
    if (!location && !/^[a-z][a-z0-9+.-]*:/i.test(baseUrl)) {
      throw new TypeError("tidings: baseUrl must be absolute where there is no `location`");
    }
    const resolved = new URL(baseUrl, location?.href);
    if (!resolved.pathname.endsWith("/")) resolved.pathname += "/";
    baseUrl = resolved.href;
  } else {
    baseUrl = null;
  }
  if (url == null || url === "") {
    if (baseUrl) {
      url = withScheme(new URL("ws", baseUrl), /^(https|wss):$/.test(new URL(baseUrl).protocol), true);
    } else {
      if (!location) throw new TypeError("tidings: connect() needs a url or baseUrl where there is no `location`");
      url = `${DEFAULT_BASE}ws`;
    }
  }
  url = String(url);
  if (location && !/^wss?:/i.test(url)) {
    const resolved = new URL(url, location.href);
    url = withScheme(resolved, resolved.protocol === "https:", true);
  }
  if (!baseUrl) {
    try {
      baseUrl = withScheme(new URL(".", url), /^wss:/i.test(url), false);
    } catch {
      baseUrl = null;                            // a url that is not absolute: WebSocket only
    }
  }
  return { url, baseUrl };
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
