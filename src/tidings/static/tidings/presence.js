/**
 * presence.js: who is on a topic. The pure syncState() and syncDiff() (as Phoenix's
 * presence.js), the checks of a presence meta, Roster (one topic's presence as the
 * client knows it) and Presence (`subscription.presence`, its public face).
 */

import { describe, TidingsError } from "./errors.js";
import { Emitter } from "./emitter.js";
import { isObject, own, put, sameJson } from "./util.js";

/** The largest presence meta the server takes, in bytes of (Python's) JSON. */
export const MAX_META_BYTES = 1024;

/** What Presence.update() rejects with over long-polling. */
export function unsupportedUpdate() {
  return new TidingsError("unsupported", "presence cannot be tracked over long-polling (a poller only watches)");
}

// A presence *state* is an object: member key -> {info, metas: [{ref, ...meta}]}, one
// meta per tracked connection (docs/protocol.md, "Presence"). A *diff* is {joins,
// leaves} of the same shape; a meta update is its old meta (same ref) leaving and the
// new one joining. syncState() and syncDiff() are pure, as in Phoenix's presence.js:
// they never change their arguments and return a new state (treat states as
// immutable: unchanged members are shared between the old state and the new).

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
export function metaProblem(meta) {
  if (!isObject(meta)) return "a presence meta must be an object";
  let copy;
  try { copy = JSON.parse(JSON.stringify(meta)); } catch (error) { return `a presence meta must be JSON (${describe(error)})`; }
  if (Object.hasOwn(copy, "ref")) return "a presence meta cannot hold 'ref': the server sets it";
  if (pythonJsonLength(copy) > MAX_META_BYTES) return `a presence meta is at most ${MAX_META_BYTES} bytes of JSON`;
  return null;
}

/** A copy of `meta` (as JSON), or a TypeError. */
export function presenceMeta(meta) {
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
 * (the first, or one after a reconnect) replaces what was known. The client resets
 * it whenever a transport (re)subscribes the topic (its onSubscribing callback): a
 * WebSocket subscribe, an HTTP run.
 */
export class Roster {
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
