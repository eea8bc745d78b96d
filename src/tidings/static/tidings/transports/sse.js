/**
 * transports/sse.js: Server-Sent Events, read with fetch (SseTransport) or, where
 * fetch cannot stream, with the browser's EventSource (EventSourceTransport).
 */

import { describe, TidingsError } from "../errors.js";
import { EventStreamParser } from "../sse-parser.js";
import { isObject, parseJson } from "../util.js";
import { HttpTransport } from "./http.js";

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
export class SseTransport extends HttpTransport {
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
    if (type === "tidings.gap") {
      // The frame of docs/protocol.md; its id moves the cursor to where the topic goes on.
      const frame = parseJson(data);
      if (!isObject(frame) || !run.topics.includes(frame.topic)) {
        callbacks.onError(new TidingsError("bad_frame", `the server sent a ${type} event that cannot be read`));
        return;
      }
      run.parts = lastEventId.split(",");
      callbacks.onGap({ ...frame, op: "gap" });
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
export class EventSourceTransport extends SseTransport {
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
    // An EventSource sends no header of ours: its token goes in the query.
    const { token } = this._settings;
    const url = this._url("sse", run);
    const source = new this._settings.EventSource(token ? `${url}&token=${encodeURIComponent(token)}` : url);
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
