// Requests: publish and ping, ids, error replies, timeouts, the queue, close().
import { test } from "node:test";
import assert from "node:assert/strict";

import { TidingsError } from "../../src/tidings/static/tidings/tidings.js";
import { setup, stateOf, tick } from "./fake-websocket.mjs";

// A test that waits for something that never comes fails instead of hanging.
const it = (name, fn) => test(name, { timeout: 5000 }, fn);

it("publish sends the frame and resolves with the reply of the same id, in any order", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const first = client.publish("room", { text: "hi" });
  const second = client.publish("room", [1, 2], { event: "typing" });
  assert.deepEqual(WS.last.frames, [
    { id: 1, op: "publish", topic: "room", data: { text: "hi" } },
    { id: 2, op: "publish", topic: "room", event: "typing", data: [1, 2] },
  ]);

  WS.last.reply(WS.last.frames[1], { topic: "room", position: "ep:8" });
  assert.equal(await stateOf(first), "pending", "the reply to 2 does not answer 1");
  assert.deepEqual(await second, { id: 2, ok: true, topic: "room", position: "ep:8" });
  WS.last.reply(WS.last.frames[0], { topic: "room", position: "ep:9" });
  assert.equal((await first).position, "ep:9");
});

it("publish rejects with the server's error code and message", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const forbidden = client.publish("room", 1);
  const rejected = client.publish("room", 2);
  WS.last.fail(WS.last.frames[0], "forbidden", "You may not publish to 'room'.");
  WS.last.fail(WS.last.frames[1], "rejected", "too rude");
  await assert.rejects(forbidden, (error) => {
    assert.ok(error instanceof TidingsError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, "forbidden");
    assert.equal(error.message, "You may not publish to 'room'.");
    return true;
  });
  await assert.rejects(rejected, { code: "rejected", message: "too rude" });
});

it("a refused publish warns on the console; the client's own failures (timeout) do not", async (t) => {
  const warn = t.mock.method(console, "warn", () => {});
  const { client, WS } = setup(t, { timeout: 20 });
  WS.last.serverOpen();
  const refused = client.publish("news.sport", 1);
  WS.last.fail(WS.last.frames[0], "forbidden", "You may not publish to 'news.sport'.");
  await assert.rejects(refused, { code: "forbidden" });
  await assert.rejects(client.publish("news.sport", 2), { code: "timeout" });
  assert.deepEqual(warn.mock.calls.map((call) => call.arguments), [
    ["tidings: the server refused to publish to 'news.sport' (forbidden): You may not publish to 'news.sport'."],
  ]);
});

it("a request with no reply rejects with code timeout; a late reply changes nothing", async (t) => {
  const { client, WS } = setup(t, { timeout: 20 });
  WS.last.serverOpen();
  const started = Date.now();
  const publish = client.publish("room", 1);
  await assert.rejects(publish, { name: "TidingsError", code: "timeout" });
  assert.ok(Date.now() - started >= 15, "waited about `timeout` ms");
  WS.last.reply(WS.last.frames[0], { topic: "room", position: "ep:1" });
  // The client still works.
  const ping = client.ping();
  WS.last.reply(WS.last.frames[1]);
  assert.deepEqual(await ping, { id: 2, ok: true });
});

it("a publish made before the socket opens is queued and sent once it opens", async (t) => {
  const { client, WS } = setup(t);
  client.subscribe("room", () => {});
  const publish = client.publish("room", { text: "early" });
  await tick();
  assert.deepEqual(WS.last.sent, []);
  assert.equal(await stateOf(publish), "pending");

  WS.last.serverOpen();
  const publishes = WS.last.framesOf("publish");
  assert.deepEqual(publishes, [{ id: 2, op: "publish", topic: "room", data: { text: "early" } }]);
  assert.equal(WS.last.frames[0].op, "subscribe", "subscriptions go first");
  WS.last.reply(publishes[0], { topic: "room", position: "ep:1" });
  assert.equal((await publish).position, "ep:1");
});

it("a queued publish times out if the socket does not open in time, and is never sent", async (t) => {
  const { client, WS } = setup(t, { timeout: 20 });
  const publish = client.publish("room", 1);
  await assert.rejects(publish, { code: "timeout" });
  WS.last.serverOpen();
  assert.deepEqual(WS.last.framesOf("publish"), []);
});

it("ping resolves with the reply; ids keep increasing", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const pings = [client.ping(), client.ping(), client.ping()];
  assert.deepEqual(WS.last.frames.map((f) => [f.id, f.op]), [[1, "ping"], [2, "ping"], [3, "ping"]]);
  for (const frame of WS.last.frames) WS.last.reply(frame);
  assert.deepEqual((await Promise.all(pings)).map((r) => r.id), [1, 2, 3]);
});

it("close() rejects pending and queued requests with code closed and refuses new ones", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const sent = client.publish("room", 1);
  const sub = client.subscribe("room", () => {});
  client.close();
  assert.equal(client.state, "closed");
  await assert.rejects(sent, { code: "closed" });
  await assert.rejects(sub.ready, { code: "closed" });
  await assert.rejects(client.publish("room", 2), { code: "closed" });
  await assert.rejects(client.ping(), { code: "closed" });
  assert.throws(() => client.subscribe("room", () => {}), { code: "closed" });
  assert.deepEqual(WS.last.closedByClient, { code: 1000, reason: "" });
});

it("close() before the socket opens rejects queued requests with code closed", async (t) => {
  const { client, WS } = setup(t);
  const queued = client.publish("room", 1);
  client.close();
  await assert.rejects(queued, { code: "closed" });
  assert.equal(WS.last.closedByClient.code, 1000);
});
