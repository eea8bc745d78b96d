// Fakes of fetch (JSON answers and streamed text/event-stream bodies, built with the
// real Response and ReadableStream) and of EventSource, for the fallback tests of
// tidings.js. The test plays the server: it answers each recorded request.

import { connect } from "../../src/tidings/static/tidings/tidings.js";
import { fakeWebSocket } from "./fake-websocket.mjs";

/** A fake fetch(); `fetch.calls` lists every request, `fetch.to("sse")` those to one endpoint. */
export function fakeFetch() {
  const calls = [];
  const fetch = (url, init = {}) => {
    const request = new FakeRequest(url, init);
    calls.push(request);
    return request.response;
  };
  fetch.calls = calls;
  /** The requests to `<base>name` ("sse", "poll", "publish"), oldest first. */
  fetch.to = (name) => calls.filter((request) => request.url.pathname.endsWith(`/${name}`));
  return fetch;
}

class FakeRequest {
  constructor(url, init) {
    this.url = new URL(url);
    this.init = init;
    this.method = init.method ?? "GET";
    this.headers = new Headers(init.headers);
    this.body = init.body;
    this.aborted = false;
    this._answered = false;
    this._stream = null;  // the controller of a streamed body
    this.response = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    init.signal?.addEventListener("abort", () => {
      this.aborted = true;
      const error = new DOMException("This operation was aborted", "AbortError");
      if (!this._answered) {
        this._answered = true;
        this._reject(error);
      } else if (this._stream) {
        try { this._stream.error(error); } catch { /* already closed */ }
      }
    });
  }

  /** The `topic` parameters. */
  get topics() { return this.url.searchParams.getAll("topic"); }

  /** The `since` parameter, or null. */
  get since() { return this.url.searchParams.get("since"); }

  /** The `timeout` parameter, or null. */
  get timeout() { return this.url.searchParams.get("timeout"); }

  /** The body, parsed. */
  get json() { return JSON.parse(this.body); }

  _answer(response) {
    if (this._answered) throw new Error(`${this.url} was answered or aborted already`);
    this._answered = true;
    this._resolve(response);
  }

  /** Answer with `status` and `body` (an object is sent as JSON, a string as HTML). */
  respond(status, body) {
    const json = typeof body !== "string";
    this._answer(new Response(json ? JSON.stringify(body) : body, {
      status,
      headers: { "Content-Type": json ? "application/json" : "text/html" },
    }));
  }

  /** The request fails as when the network is down (fetch rejects with a TypeError). */
  fail(message = "fetch failed") {
    if (this._answered) throw new Error(`${this.url} was answered or aborted already`);
    this._answered = true;
    this._reject(new TypeError(message));
  }

  // --- text/event-stream ---

  /** Answer 200 text/event-stream; then write(), event(), end(). */
  stream() {
    const body = new ReadableStream({ start: (controller) => { this._stream = controller; } });
    this._answer(new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream; charset=utf-8" } }));
    return this;
  }

  /** Write raw text to the stream. */
  write(text) {
    this._stream.enqueue(new TextEncoder().encode(text));
    return this;
  }

  /** Start the stream as the server does: retry, then tidings.open with the cursor as id. */
  open(cursor, topics) {
    this.stream();
    return this.write(`retry: 2000\nid: ${cursor}\nevent: tidings.open\ndata: ${JSON.stringify({ topics })}\n\n`);
  }

  /** One message event: the cursor after it as id, the event name, the data as JSON. */
  event(cursor, event, data) {
    return this.write(`id: ${cursor}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** A presence frame ({op: "presence" | "presence_diff", topic, ...}) as the server streams it: no id. */
  presence(frame) {
    return this.write(`event: tidings.${frame.op}\ndata: ${JSON.stringify(frame)}\n\n`);
  }

  /** The server drops the stream (slow consumer). */
  slowConsumer() {
    return this.write(`event: tidings.close\ndata: {"code": 4009, "reason": "slow consumer"}\n\n`);
  }

  /** The stream ends (the server or the network closed it). */
  end() {
    this._stream.close();
  }
}

/** A fresh fake EventSource class with its own list of instances. */
export function fakeEventSource() {
  class FakeEventSource {
    static instances = [];

    static get last() {
      return FakeEventSource.instances.at(-1);
    }

    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.closed = false;
      this.onerror = null;
      this._listeners = new Map();
      FakeEventSource.instances.push(this);
    }

    addEventListener(type, fn) {
      if (!this._listeners.has(type)) this._listeners.set(type, []);
      this._listeners.get(type).push(fn);
    }

    close() {
      this.readyState = 2;
      this.closed = true;
    }

    /** The event names the client listens to. */
    get types() {
      return [...this._listeners.keys()];
    }

    /** Dispatch as a browser does: only to the listeners of that exact name. */
    serverEvent(type, lastEventId, data) {
      if (this.closed) return;
      this.readyState = 1;
      const event = { type, data: typeof data === "string" ? data : JSON.stringify(data), lastEventId };
      for (const fn of this._listeners.get(type) ?? []) fn(event);
    }

    serverError() {
      this.onerror?.({ type: "error" });
    }
  }
  return FakeEventSource;
}


/** The base URL the HTTP fakes answer under. */
export const BASE = "http://test/realtime/";

/**
 * A client on a fake WebSocket and a fake fetch (no EventSource, no cookies, tiny
 * backoff), closed when test `t` ends; `options` override any of it.
 */
export function setupHttp(t, options = {}) {
  const WS = fakeWebSocket();
  const fetch = fakeFetch();
  const client = connect({
    baseUrl: BASE,
    WebSocket: WS,
    fetch,
    EventSource: null,
    cookie: () => "",
    backoff: { initial: 1, max: 1, jitter: 0 },
    timeout: 1000,
    ...options,
  });
  t.after(() => client.close());
  return { client, WS, fetch };
}
