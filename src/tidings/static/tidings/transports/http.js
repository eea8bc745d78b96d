/**
 * transports/http.js: HttpTransport, what the SSE and long-poll transports share
 * (runs, refusals, the subscribe replies), and publishing over HTTP.
 */

import { describe, errorFromReply, report, TidingsError } from "../errors.js";

/** HTTP error codes that refuse the request's topics, rather than say the server is unwell. */
const REFUSALS = new Set(["forbidden", "invalid_topic", "bad_request"]);

/**
 * What SSE and long-poll share: one HTTP request (or loop of requests) at a time for
 * the client's current set of topics, a "run", restarted with the cursor of the known
 * positions whenever that set changes; error replies that refuse topics; publishing
 * over `POST <baseUrl>publish`.
 *
 * A *cursor* (docs of tidings.transports.http) is the positions of the run's topics,
 * comma-separated in the order of its `topic` parameters; an empty part: no position.
 */
export class HttpTransport {
  /** `settings` and `callbacks`: the transport interface of transports/index.js. */
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

  /** fetch() with the client's cookies (or its token), never from the cache. */
  _get(url, accept, signal) {
    const headers = { Accept: accept, ...bearer(this._settings) };
    return this._settings.fetch(url, { headers, credentials: "same-origin", cache: "no-store", signal });
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

/** The `Authorization` header of the client's token, if it has one. */
function bearer(settings) {
  return settings.token ? { Authorization: `Bearer ${settings.token}` } : {};
}

/** `POST <baseUrl>publish {topic, data, event?}`; settles `request` like a WebSocket reply. Never rejects. */
async function publishOverHttp(settings, request) {
  if (typeof settings.fetch !== "function") {
    return request.settle(new TidingsError("transport", "no fetch here to publish with"));
  }
  const { op, ...body } = request.frame;
  const controller = new AbortController();
  request.cancel = () => controller.abort();
  const headers = { "Content-Type": "application/json", Accept: "application/json", ...bearer(settings) };
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
