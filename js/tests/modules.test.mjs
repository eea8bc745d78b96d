// The modules on their own: the entry's exports, positions, and each transport driven
// through nothing but the settings and callbacks of transports/index.js.
import { test } from "node:test";
import assert from "node:assert/strict";

import * as tidings from "../../src/tidings/static/tidings/tidings.js";
import * as client from "../../src/tidings/static/tidings/client.js";
import * as errors from "../../src/tidings/static/tidings/errors.js";
import * as presence from "../../src/tidings/static/tidings/presence.js";
import * as subscription from "../../src/tidings/static/tidings/subscription.js";
import { isNewer } from "../../src/tidings/static/tidings/positions.js";
import { LongPollTransport } from "../../src/tidings/static/tidings/transports/longpoll.js";
import { WebSocketTransport } from "../../src/tidings/static/tidings/transports/websocket.js";
import { fakeWebSocket, tick, until } from "./fake-websocket.mjs";
import { BASE, fakeFetch } from "./fake-http.mjs";

const it = (name, fn) => test(name, { timeout: 5000 }, fn);

it("tidings.js exports what it always did, the very objects of the modules that hold them", () => {
  assert.deepEqual(Object.keys(tidings).sort(), [
    "Client", "Presence", "Subscription", "TidingsError", "connect", "syncDiff", "syncState",
  ]);
  assert.equal(tidings.connect, client.connect);
  assert.equal(tidings.Client, client.Client);
  assert.equal(tidings.TidingsError, errors.TidingsError);
  assert.equal(tidings.Presence, presence.Presence);
  assert.equal(tidings.syncState, presence.syncState);
  assert.equal(tidings.syncDiff, presence.syncDiff);
  assert.equal(tidings.Subscription, subscription.Subscription);
});

it("positions compare by offset within an epoch; a new epoch is always newer", () => {
  assert.equal(isNewer("ep:3", null), true);
  assert.equal(isNewer("ep:3", "ep:2"), true);
  assert.equal(isNewer("ep:2", "ep:2"), false);
  assert.equal(isNewer("ep:10", "ep:9"), true, "as numbers, not strings");
  assert.equal(isNewer("ep:1", "other:9"), true);
  assert.equal(isNewer("a:b:5", "a:b:4"), true, "the epoch may contain ':'");
  assert.equal(isNewer("opaque", "opaque"), false);
  assert.equal(isNewer("opaque2", "opaque"), true);
});

/** Callbacks that record every call as [name, ...args], over `entries`. */
function recorder(entries) {
  const calls = [];
  let id = 0;
  const posts = [];
  const record = (name) => (...args) => { calls.push([name, ...args]); };
  const callbacks = {
    entries: () => [...entries],
    entry: (topic) => entries.find((entry) => entry.topic === topic),
    backingOff: () => false,
    nextId: () => ++id,
    inOrder: (task) => posts.push(task),
  };
  for (const name of ["onOpen", "onClose", "onProven", "onRoundTrip", "onSubscribing", "onSubscribeReply",
    "onMessage", "onSnapshot", "onPresence", "onPresenceSettled", "onError"]) {
    callbacks[name] = record(name);
  }
  return { callbacks: Object.freeze(callbacks), calls, posts, names: () => calls.map(([name]) => name) };
}

function entry(topic, position = null) {
  return { topic, position, events: new Set(), watch: null, version: 0, initial: false };
}

it("the WebSocket transport needs nothing but its settings and callbacks", async () => {
  const WS = fakeWebSocket();
  const lobby = entry("lobby", "ep:3");
  const { callbacks, calls, names } = recorder([lobby]);
  const transport = new WebSocketTransport(Object.freeze({ url: "ws://test/realtime/ws", WebSocket: WS }), callbacks);
  transport.open();
  assert.equal(WS.last.url, "ws://test/realtime/ws");
  WS.last.serverOpen();
  assert.deepEqual(names(), ["onProven", "onSubscribing", "onOpen"]);
  assert.equal(calls[1][1], lobby);
  const [subscribe] = WS.last.framesOf("subscribe");
  assert.deepEqual(subscribe, { id: 1, op: "subscribe", topic: "lobby", since: "ep:3" });

  WS.last.reply(subscribe, { topic: "lobby", position: "ep:3", recovered: true });
  WS.last.message("lobby", "ep:4", "hi");
  WS.last.serverSend({ op: "presence", topic: "lobby", state: {} });
  WS.last.serverSend("not json");
  assert.deepEqual(calls.slice(3).map(([name, arg]) => [name, arg === lobby ? "lobby" : arg?.op ?? arg?.code]), [
    ["onRoundTrip", undefined], ["onSubscribeReply", "lobby"], ["onMessage", "message"], ["onPresence", "presence"],
    ["onError", "bad_frame"],
  ]);

  let settled = null;
  transport.request({ frame: { op: "publish", topic: "lobby", data: 1 }, settle: (error, reply) => { settled = [error, reply]; } });
  const [publish] = WS.last.framesOf("publish");
  assert.equal(publish.id, 2);
  WS.last.serverClose(1006, "gone");
  await tick();
  assert.equal(settled[0].code, "disconnected");
  assert.deepEqual(calls.at(-1), ["onClose", { code: 1006, reason: "gone" }]);
});

it("the long-poll transport needs nothing but its settings and callbacks", async () => {
  const fetch = fakeFetch();
  const news = entry("news", "ep:3");
  const { callbacks, calls, posts, names } = recorder([news]);
  const settings = Object.freeze({ baseUrl: BASE, fetch, cookie: () => "", timeout: 1000, pollTimeout: 7 });
  const transport = new LongPollTransport(settings, callbacks);
  transport.open();
  await until(() => fetch.to("poll").length === 1);
  const [first] = fetch.to("poll");
  assert.deepEqual([first.topics, first.since, first.timeout], [["news"], "ep:3", "0"]);
  first.respond(200, {
    messages: [{ op: "message", topic: "news", position: "ep:4", event: "message", data: "x" }],
    since: "ep:4",
    topics: { news: { position: "ep:4", recovered: true } },
  });
  await until(() => fetch.to("poll").length === 2);
  assert.deepEqual(names(), ["onProven", "onRoundTrip", "onOpen", "onSubscribeReply", "onMessage"]);
  assert.deepEqual(calls[3], ["onSubscribeReply", news, { ok: true, topic: "news", position: "ep:4", recovered: true }]);
  const second = fetch.to("poll")[1];
  assert.deepEqual([second.since, second.timeout], ["ep:4", "7"]);

  // Publishing goes over POST, in the order the client keeps (inOrder).
  let settled = null;
  transport.request({ frame: { op: "publish", topic: "news", data: 1 }, settle: (error, reply) => { settled = [error, reply]; } });
  assert.equal(posts.length, 1);
  posts[0]();
  await until(() => fetch.to("publish").length === 1);
  fetch.to("publish")[0].respond(200, { ok: true, topic: "news", position: "ep:5" });
  await until(() => settled);
  assert.deepEqual(settled, [null, { ok: true, topic: "news", position: "ep:5" }]);

  transport.close();
  assert.deepEqual(calls.at(-1), ["onClose", { code: 1000, reason: "" }]);
  assert.equal(second.aborted, true);
});
