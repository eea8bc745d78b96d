// A fake WebSocket for the unit tests of tidings.js. Each call of fakeWebSocket()
// returns a fresh class with its own list of instances, so tests don't share state.
// The test plays the server with the server* methods, reply(), fail() and message().

import { connect } from "../../src/tidings/static/tidings/tidings.js";

export function fakeWebSocket() {
  class FakeWebSocket {
    static instances = [];

    /** The socket made most recently. */
    static get last() {
      return FakeWebSocket.instances.at(-1);
    }

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols; // the subprotocols offered (a token travels as one)
      this.readyState = 0; // CONNECTING
      this.sent = []; // raw text frames the client sent
      this.closedByClient = null; // {code, reason} if the client called close()
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }

    // --- the part of the WebSocket API the client uses ---

    send(data) {
      if (this.readyState !== 1) throw new Error(`send() in readyState ${this.readyState}`);
      this.sent.push(data);
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.closedByClient = { code, reason };
      this.readyState = 2; // CLOSING; the close event comes later, as in a browser
      queueMicrotask(() => this.serverClose(code, reason));
    }

    // --- the server side, driven by the test ---

    /** The frames the client sent, parsed. */
    get frames() {
      return this.sent.map((text) => JSON.parse(text));
    }

    /** The frames the client sent with this op. */
    framesOf(op) {
      return this.frames.filter((frame) => frame.op === op);
    }

    serverOpen() {
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    }

    /** Send a server frame (an object is JSON-encoded, a string is sent as is). */
    serverSend(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    /** Answer the client's frame `request` with ok: true and `fields`. */
    reply(request, fields = {}) {
      this.serverSend({ id: request.id, ok: true, ...fields });
    }

    /** Answer the client's frame `request` with an error. */
    fail(request, code, message = "") {
      this.serverSend({ id: request.id, ok: false, error: { code, message } });
    }

    /** Broadcast a message frame. */
    message(topic, position, data = null, event = "message") {
      this.serverSend({ op: "message", topic, position, event, data });
    }

    /** The socket closes with `code` (the server closed it, or the network dropped). */
    serverClose(code = 1006, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
  }
  return FakeWebSocket;
}

/** Let pending microtasks and 0 ms timers run. */
export function tick(ms = 0) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `predicate()` is true; fail after `ms`. */
export async function until(predicate, ms = 1000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await tick(1);
  }
}

/** How a settled-or-not promise stands right now: "pending", "fulfilled" or "rejected". */
export async function stateOf(promise) {
  const pending = Symbol("pending");
  try {
    const value = await Promise.race([promise, tick().then(() => pending)]);
    return value === pending ? "pending" : "fulfilled";
  } catch {
    return "rejected";
  }
}

/**
 * A client on a fresh fake socket class, closed when test `t` ends. Backoff delays are
 * 1 ms without jitter and replies time out after 200 ms, unless `options` say otherwise.
 * It uses the WebSocket transport only: falling back is tested in fallback.test.mjs.
 */
export function setup(t, options = {}) {
  const WS = fakeWebSocket();
  const client = connect("ws://test/realtime/ws", {
    WebSocket: WS,
    transports: ["websocket"],
    backoff: { initial: 1, max: 1, jitter: 0 },
    timeout: 200,
    ...options,
  });
  t.after(() => client.close());
  return { client, WS };
}
