// Subscriptions: the subscribe frame, ready, messages, positions, sharing a topic.
import { test } from "node:test";
import assert from "node:assert/strict";

import { TidingsError } from "../../src/tidings/static/tidings/tidings.js";
import { setup, stateOf, tick, until } from "./fake-websocket.mjs";

// A test that waits for something that never comes fails instead of hanging.
const it = (name, fn) => test(name, { timeout: 5000 }, fn);

it("subscribe waits for the socket, sends the frame and resolves ready with the reply", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("rooms.lobby", () => {});
  assert.equal(client.state, "connecting");
  assert.deepEqual(WS.last.sent, [], "nothing can be sent before the socket opens");
  assert.equal(await stateOf(sub.ready), "pending");

  WS.last.serverOpen();
  assert.equal(client.state, "open");
  assert.deepEqual(WS.last.frames, [{ id: 1, op: "subscribe", topic: "rooms.lobby" }]);

  WS.last.reply(WS.last.frames[0], { topic: "rooms.lobby", position: "k3Xq9a:41" });
  const reply = await sub.ready;
  assert.deepEqual(reply, { id: 1, ok: true, topic: "rooms.lobby", position: "k3Xq9a:41" });
  assert.equal(sub.topic, "rooms.lobby");
  assert.equal(sub.position, "k3Xq9a:41", "position is where the subscription stands");
  assert.equal(sub.recovered, undefined);
  assert.equal(sub.active, true);
});

it("subscribe on an open client sends at once, with since; the replay reaches the callback", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const subscribed = [];
  const sub = client.subscribe("news", (msg) => got.push(msg), { since: "ep:7" });
  sub.on("subscribed", (reply) => subscribed.push(reply.recovered));
  assert.equal(sub.position, "ep:7");
  const [frame] = WS.last.frames;
  assert.deepEqual(frame, { id: 1, op: "subscribe", topic: "news", since: "ep:7" });

  WS.last.message("news", "ep:8", { n: 8 });
  WS.last.message("news", "ep:9", { n: 9 });
  WS.last.reply(frame, { topic: "news", position: "ep:9", recovered: true });
  await sub.ready;
  assert.deepEqual(got.map((m) => m.data.n), [8, 9]);
  assert.equal(sub.recovered, true);
  assert.equal(sub.position, "ep:9");
  assert.deepEqual(subscribed, [true]);
});

it("a recovered reply that arrives before the replayed messages does not hide them", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const sub = client.subscribe("news", (msg) => got.push(msg.position), { since: "ep:5" });
  WS.last.reply(WS.last.frames[0], { topic: "news", position: "ep:8", recovered: true });
  await sub.ready;
  for (const position of ["ep:6", "ep:7", "ep:8"]) WS.last.message("news", position);
  assert.deepEqual(got, ["ep:6", "ep:7", "ep:8"]);
  assert.equal(sub.position, "ep:8");
});

it("a message reaches the callback as sent and updates position; other topics don't", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const sub = client.subscribe("rooms.lobby", (msg) => got.push(msg));
  WS.last.reply(WS.last.frames[0], { topic: "rooms.lobby", position: "ep:0" });
  await sub.ready;

  WS.last.message("rooms.lobby", "ep:1", { text: "hi" }, "chat");
  WS.last.message("rooms.other", "ep:5", { text: "not for us" });
  assert.deepEqual(got, [
    { op: "message", topic: "rooms.lobby", position: "ep:1", event: "chat", data: { text: "hi" } },
  ]);
  assert.equal(sub.position, "ep:1");
});

it("forbidden rejects ready with a TidingsError, fires error, and ends the subscription", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const errors = [];
  const sub = client.subscribe("secret", (msg) => got.push(msg));
  sub.on("error", (error) => errors.push(error.code));
  WS.last.fail(WS.last.frames[0], "forbidden", "You may not subscribe to 'secret'.");

  await assert.rejects(sub.ready, (error) => {
    assert.ok(error instanceof TidingsError);
    assert.equal(error.code, "forbidden");
    assert.equal(error.message, "You may not subscribe to 'secret'.");
    return true;
  });
  assert.deepEqual(errors, ["forbidden"]);
  assert.equal(sub.active, false);

  WS.last.message("secret", "ep:1");
  assert.deepEqual(got, []);

  // A refused topic is not resubscribed after a reconnect...
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  assert.deepEqual(WS.last.framesOf("subscribe"), []);
  // ...but subscribing again asks the server again.
  client.subscribe("secret", () => {});
  assert.deepEqual(WS.last.framesOf("subscribe").map((f) => f.topic), ["secret"]);
});

it("a refused subscribe warns on the console with its topic, code and message, once per topic", async (t) => {
  const warn = t.mock.method(console, "warn", () => {});
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const errors = [];
  // Nobody awaits these `ready`s: a refusal must still not be an unhandled rejection.
  const sub = client.subscribe("news.sport", () => {});
  client.subscribe("news.sport", () => {}).on("error", (error) => errors.push(error.code));
  sub.on("error", (error) => errors.push(error.code));
  WS.last.fail(WS.last.frames[0], "forbidden", "You may not subscribe to 'news.sport'.");
  await tick();
  assert.deepEqual(errors, ["forbidden", "forbidden"]);
  assert.deepEqual(warn.mock.calls.map((call) => call.arguments), [
    ["tidings: the server refused to subscribe to 'news.sport' (forbidden): You may not subscribe to 'news.sport'."],
  ]);
  assert.equal(await stateOf(sub.ready), "rejected");
});

it("warn: false keeps a refusal off the console; ready and error still tell", async (t) => {
  const warn = t.mock.method(console, "warn", () => {});
  const { client, WS } = setup(t, { warn: false });
  WS.last.serverOpen();
  const errors = [];
  const sub = client.subscribe("secret", () => {}).on("error", (error) => errors.push(error.code));
  WS.last.fail(WS.last.frames[0], "forbidden", "You may not subscribe to 'secret'.");
  await assert.rejects(sub.ready, { code: "forbidden" });
  assert.deepEqual(errors, ["forbidden"]);
  assert.equal(warn.mock.callCount(), 0);
});

it("a message whose position was seen is dropped; offsets compare as integers; a new epoch resets", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const sub = client.subscribe("t", (msg) => got.push(msg.position));
  WS.last.reply(WS.last.frames[0], { topic: "t", position: "ep:0" });
  await sub.ready;

  const sent = ["ep:1", "ep:2", "ep:2", "ep:1", "ep:9", "ep:10", "ep:9", "new:1", "new:1", "new:2"];
  for (const position of sent) WS.last.message("t", position);
  assert.deepEqual(got, ["ep:1", "ep:2", "ep:9", "ep:10", "new:1", "new:2"]);
  assert.equal(sub.position, "new:2");
});

it("two Subscriptions to one topic share one server subscription", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const a = [];
  const b = [];
  const subA = client.subscribe("room", (msg) => a.push(msg.position));
  const subB = client.subscribe("room", (msg) => b.push(msg.position));
  assert.notEqual(subA, subB);
  assert.equal(WS.last.framesOf("subscribe").length, 1, "one subscribe frame for both");

  WS.last.reply(WS.last.frames[0], { topic: "room", position: "ep:0" });
  assert.equal((await subA.ready).position, "ep:0");
  assert.equal((await subB.ready).position, "ep:0");

  WS.last.message("room", "ep:1");
  assert.deepEqual([a, b], [["ep:1"], ["ep:1"]]);

  // A third one, after the reply, is ready at once without asking the server.
  const subC = client.subscribe("room", () => {});
  assert.equal(await stateOf(subC.ready), "fulfilled");
  assert.equal(subC.position, "ep:1");
  assert.equal(WS.last.framesOf("subscribe").length, 1);

  subA.unsubscribe();
  subC.unsubscribe();
  assert.deepEqual(WS.last.framesOf("unsubscribe"), [], "subB still listens");
  WS.last.message("room", "ep:2");
  assert.deepEqual([a, b], [["ep:1"], ["ep:1", "ep:2"]]);

  subB.unsubscribe();
  assert.deepEqual(WS.last.framesOf("unsubscribe"), [{ id: 2, op: "unsubscribe", topic: "room" }]);
  WS.last.message("room", "ep:3");
  assert.deepEqual([a, b], [["ep:1"], ["ep:1", "ep:2"]]);
  assert.equal(subB.active, false);
  assert.equal(subB.position, "ep:2", "the last position stays readable");
});

it("unsubscribing before the reply rejects ready; a fresh subscribe ignores the old reply", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const old = client.subscribe("room", () => {});
  old.unsubscribe();
  await assert.rejects(old.ready, { code: "unsubscribed" });

  const got = [];
  const sub = client.subscribe("room", (msg) => got.push(msg.position));
  const [first, second] = WS.last.framesOf("subscribe");
  assert.equal(second.topic, "room");
  WS.last.fail(first, "rate_limited"); // answers the old subscription, not this one
  assert.equal(await stateOf(sub.ready), "pending");
  assert.equal(sub.active, true);
  WS.last.reply(second, { topic: "room", position: "ep:3" });
  assert.equal((await sub.ready).position, "ep:3");
  WS.last.message("room", "ep:4");
  assert.deepEqual(got, ["ep:4"]);
});

it("a callback that throws is reported and does not stop the other callbacks", async (t) => {
  const reported = [];
  globalThis.reportError = (error) => reported.push(error.message);
  t.after(() => delete globalThis.reportError);
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  client.subscribe("t", () => { throw new Error("boom"); });
  client.subscribe("t", (msg) => got.push(msg.position));
  WS.last.message("t", "ep:1");
  assert.deepEqual(got, ["ep:1"]);
  assert.deepEqual(reported, ["boom"]);
});

it("server errors that answer no request and frames that are not JSON go to the client's error event", (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const errors = [];
  client.on("error", (error) => errors.push(error.code));
  WS.last.serverSend({ id: null, ok: false, error: { code: "too_large", message: "too large" } });
  WS.last.serverSend("not json");
  WS.last.serverSend("[1, 2]");
  assert.deepEqual(errors, ["too_large", "bad_frame", "bad_frame"]);
  assert.equal(client.state, "open", "the connection stays open");
});

test("initial: the subscribe asks for a snapshot, which reaches the callback before changes, and again after a reconnect", { timeout: 5000 }, async (t) => {
  const { client, WS } = setup(t);
  const got = [];
  const sub = client.subscribe("app.counter", (m) => got.push(m.op === "snapshot" ? ["snapshot", m.rows.length] : ["message", m.data.action]), { initial: true });
  WS.last.serverOpen();
  const [frame] = WS.last.framesOf("subscribe");
  assert.equal(frame.initial, true);
  WS.last.reply(frame, { topic: "app.counter", position: "e:3" });
  WS.last.serverSend({ op: "snapshot", topic: "app.counter", position: "e:3", rows: [{ pk: 1, data: {} }, { pk: 2, data: {} }] });
  WS.last.serverSend({ op: "message", topic: "app.counter", position: "e:4", event: "update", data: { action: "update" } });
  await sub.ready;
  assert.deepEqual(got, [["snapshot", 2], ["message", "update"]]);
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  const [again] = WS.last.framesOf("subscribe");
  assert.equal(again.initial, true);
  assert.equal(again.since, "e:4");
});

/** A live subscription to "news" that joined at `position`, recording messages and gaps. */
async function subscribedAt(t, position) {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const got = [];
  const gaps = [];
  const sub = client.subscribe("news", (msg) => got.push(msg.position));
  sub.on("gap", (gap) => gaps.push(gap));
  WS.last.reply(WS.last.frames[0], { topic: "news", position });
  await sub.ready;
  return { WS, sub, got, gaps };
}

it("a gap at a topic joined empty (0:0) with nothing since is not told: nothing was lost", async (t) => {
  const { WS, got, gaps } = await subscribedAt(t, "0:0");
  WS.last.serverSend({ op: "gap", topic: "news", position: "e:0" }); // through Pushpin
  WS.last.message("news", "e:1");
  WS.last.serverSend({ op: "gap", topic: "news", position: "f:0" }); // a real one
  WS.last.message("news", "f:1");
  assert.deepEqual(gaps, [{ topic: "news", position: "f:0", recovered: false }]);
  assert.deepEqual(got, ["e:1", "f:1"]);
});

it("a gap frame (history lost under the live stream) fires 'gap' and moves the position", async (t) => {
  const { WS, sub, got, gaps } = await subscribedAt(t, "old:3");
  WS.last.message("news", "old:4");
  WS.last.serverSend({ op: "gap", topic: "news", position: "new:1" });
  WS.last.message("news", "new:2");
  assert.deepEqual(gaps, [{ topic: "news", position: "new:1", recovered: false }]);
  assert.deepEqual(got, ["old:4", "new:2"]);
  assert.equal(sub.position, "new:2");
  assert.equal(sub.recovered, false);
});
