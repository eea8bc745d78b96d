/** transports/websocket.js: the WebSocket transport (docs/protocol.md, on one socket). */

import { errorFromReply, TidingsError } from "../errors.js";
import { isObject } from "../util.js";

/** Handlers of a frame whose reply nobody waits for. */
const IGNORE = Object.freeze({ onReply() {}, onLost() {} });

/** The WebSocket transport: the protocol of docs/protocol.md, on one socket. */
export class WebSocketTransport {
  /** `settings` and `callbacks`: the transport interface of transports/index.js. */
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
    const { token } = this._settings;           // a token travels as a subprotocol
    const ws = token
      ? new this._settings.WebSocket(this._settings.url, ["tidings", `tidings.token.${token}`])
      : new this._settings.WebSocket(this._settings.url);
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
    if (frame.op === "gap") return callbacks.onGap(frame);
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
