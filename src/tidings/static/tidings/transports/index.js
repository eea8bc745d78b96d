/**
 * transports/index.js: the transports, which of them can run here, and the
 * interface between them and the Client.
 *
 * The Client knows the topics, their positions, the requests, and when to reconnect;
 * a transport knows how to talk to the server. One transport object serves one
 * connection (like one WebSocket): once it reports closed, the Client makes a new one.
 * A transport sees nothing of the Client but what it is given:
 *
 *   new Transport(settings, callbacks)
 *
 * `settings` (frozen, taken when the transport is made): url (the WebSocket url),
 * baseUrl (of the HTTP endpoints), WebSocket, EventSource, fetch (what to connect
 * with; null where there is none), cookie() (where the csrftoken cookie is), timeout
 * (ms a request waits for its reply, and an SSE stream for its first event),
 * pollTimeout (s a long poll may be held).
 *
 * The client calls the transport's methods:
 *   open()            start connecting
 *   add(entry)        a topic was subscribed
 *   remove(topic)     a topic's last Subscription went
 *   refresh()         a Subscription declared new event names
 *   presence(entry)   the presence asked for on a topic changed (entry.watch, version)
 *   request(request)  send a publish or ping, {frame, settle(error, reply), done,
 *                     cancel}: the transport may set `cancel` (called once the request
 *                     is settled: forget the reply, abort the fetch); only called once open
 *   close()           the client closes for good; the transport still reports onClose
 *
 * A topic *entry* is read-only to a transport: {topic, position (the last seen, or
 * null), events (a Set of event names), watch (the presence asked for: null, true or
 * a meta), version (of watch), initial (a model feed's snapshot is wanted)}.
 *
 * `callbacks` are all a transport may call (each one bound to this transport):
 *   entries()                 the topic entries now subscribed, in subscription order
 *   entry(topic)              the entry of `topic` now, or undefined if unsubscribed
 *   backingOff()              whether the client reconnects after a failure (then some
 *                             round trip must succeed to reset the backoff)
 *   nextId()                  a fresh WebSocket frame id, unique for the client's life
 *   inOrder(task)             run `task()` (it returns a promise) once the tasks given
 *                             before it, by this transport or an earlier one, settled
 *   onOpen()                  connected: the client sends its unsent requests
 *   onClose({code, reason})   once, when over (closed, failed, or never connected)
 *   onProven()                the server answered: this transport works here
 *   onRoundTrip()             the server answered a request: reset the backoff
 *   onSubscribing(entry)      the topic is (re)subscribed: its presence state follows anew
 *   onSubscribeReply(entry, reply)  {ok: true, topic, position, recovered?} or an error
 *   onMessage(message)        {op: "message", topic, position, event, data}
 *   onSnapshot(frame)         {op: "snapshot", topic, position, rows}
 *   onGap(frame)              {op: "gap", topic, position}: the topic's history was lost
 *                             under the live stream (its epoch changed); it goes on from
 *                             `position`
 *   onPresence(frame)         a presence state or diff (docs/protocol.md, "Presence")
 *   onPresenceSettled(entry, version, error?)  the server has the topic's presence as of
 *                             `version` (or refused it: `error`)
 *   onError(error)            a TidingsError that answers no request: the "error" event
 */

import { LongPollTransport } from "./longpoll.js";
import { EventSourceTransport, SseTransport } from "./sse.js";
import { WebSocketTransport } from "./websocket.js";

/** The transports, in the order they are tried by default. */
export const TRANSPORTS = Object.freeze(["websocket", "sse", "longpoll"]);

/** Whether `fetch` can stream a response body here (else SSE needs EventSource). */
function streamingFetch(fetch) {
  return typeof fetch === "function" && typeof globalThis.TextDecoder === "function";
}

/**
 * The names in `wanted` that can run here: their constructor or fetch exists in `io`
 * ({WebSocket, EventSource, fetch}), and the HTTP ones need a `baseUrl`.
 */
export function usableTransports(wanted, io, baseUrl) {
  for (const name of wanted) {
    if (!TRANSPORTS.includes(name)) throw new TypeError(`tidings: unknown transport '${name}'`);
  }
  const usable = [...new Set(wanted)].filter((name) => (
    name === "websocket" ? typeof io.WebSocket === "function"
      : !baseUrl ? false
        : name === "sse" ? streamingFetch(io.fetch) || typeof io.EventSource === "function"
          : typeof io.fetch === "function"
  ));
  if (!usable.length) {
    throw new TypeError(`tidings: none of the transports ${wanted.join(", ")} can run here; `
      + "pass options.WebSocket, options.EventSource or options.fetch");
  }
  return usable;
}

/** The class of the transport `name`: SSE is read with fetch where it can stream. */
export function transportClass(name, io) {
  if (name === "websocket") return WebSocketTransport;
  if (name === "longpoll") return LongPollTransport;
  return streamingFetch(io.fetch) ? SseTransport : EventSourceTransport;
}
