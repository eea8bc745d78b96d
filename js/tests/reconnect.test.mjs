// Reconnecting: which close codes, backoff, resubscribing with since, the url.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../../src/tidings/static/tidings/tidings.js";
import { fakeWebSocket, setup, tick, until } from "./fake-websocket.mjs";

// A test that waits for something that never comes fails instead of hanging.
const it = (name, fn) => test(name, { timeout: 5000 }, fn);

/** Open the socket and answer its subscribe frames with `position` (or "ep:0"). */
function openAndSubscribe(ws, positions = {}) {
  ws.serverOpen();
  for (const frame of ws.framesOf("subscribe")) {
    ws.reply(frame, { topic: frame.topic, position: positions[frame.topic] ?? "ep:0", recovered: "since" in frame ? true : undefined });
  }
}

for (const code of [1006, 1011, 1012, 4008, 4009]) {
  it(`after close ${code} the client reconnects and resubscribes with since = the last position`, async (t) => {
    const { client, WS } = setup(t);
    const events = [];
    client.on("close", (e) => events.push(["close", e.code, e.reason, client.state]));
    client.on("reconnecting", (e) => events.push(["reconnecting", e.attempt, e.delay]));
    client.on("open", () => events.push(["open", client.state]));
    const got = [];
    const lobby = client.subscribe("lobby", (msg) => got.push(msg.data));
    const news = client.subscribe("news", () => {});
    openAndSubscribe(WS.last, { lobby: "ep:3", news: "ep:0" });
    await lobby.ready;
    WS.last.message("lobby", "ep:4", "four");

    WS.last.serverClose(code, "bye");
    assert.equal(client.state, "connecting");
    await until(() => WS.instances.length === 2);
    const ws = WS.last;
    assert.equal(ws.url, "ws://test/realtime/ws");
    ws.serverOpen();
    assert.deepEqual(
      ws.framesOf("subscribe").map(({ topic, since }) => ({ topic, since })),
      [{ topic: "lobby", since: "ep:4" }, { topic: "news", since: "ep:0" }],
    );
    assert.deepEqual(events, [
      ["open", "open"],
      ["close", code, "bye", "connecting"],
      ["reconnecting", 1, 1],
      ["open", "open"],
    ]);

    // The server replays what was missed; what was already seen is dropped.
    const [again] = ws.framesOf("subscribe");
    ws.message("lobby", "ep:4", "four");
    ws.message("lobby", "ep:5", "five");
    ws.reply(again, { topic: "lobby", position: "ep:5", recovered: true });
    ws.message("lobby", "ep:6", "six");
    assert.deepEqual(got, ["four", "five", "six"]);
    assert.equal(lobby.recovered, true);
  });
}

for (const code of [1009, 1000]) {
  it(`after close ${code} from the server the client does not reconnect`, async (t) => {
    const { client, WS } = setup(t);
    const reconnecting = [];
    client.on("reconnecting", (e) => reconnecting.push(e));
    WS.last.serverOpen();
    const inFlight = client.publish("room", 1);
    WS.last.serverClose(code);
    const queued = client.publish("room", 2);
    assert.equal(client.state, "closed");
    await assert.rejects(inFlight, { code: "disconnected" });
    await tick(20);
    assert.equal(WS.instances.length, 1);
    assert.deepEqual(reconnecting, []);

    // open() connects again, and sends what was queued meanwhile.
    client.open();
    assert.equal(WS.instances.length, 2);
    WS.last.serverOpen();
    assert.deepEqual(WS.last.framesOf("publish").map((f) => f.data), [2]);
    WS.last.reply(WS.last.framesOf("publish")[0]);
    await queued;
  });
}

it("requests queued when the server closes with 1009 reject with code disconnected at once", async (t) => {
  const { client, WS } = setup(t, { timeout: 1000 });
  const queued = client.publish("room", 1);
  WS.last.serverClose(1009);
  const started = Date.now();
  await assert.rejects(queued, { code: "disconnected" });
  assert.ok(Date.now() - started < 500, "without waiting for the timeout");
});

it("after client.close() the client does not reconnect", async (t) => {
  const { client, WS } = setup(t);
  const closes = [];
  client.on("close", (e) => closes.push(e.code));
  client.subscribe("room", () => {});
  openAndSubscribe(WS.last);
  client.close();
  await tick(20);
  assert.deepEqual(closes, [1000]);
  assert.equal(client.state, "closed");
  assert.equal(WS.instances.length, 1);
  assert.throws(() => client.open(), { code: "closed" });
});

it("client.close() while waiting to reconnect cancels the reconnect", async (t) => {
  const { client, WS } = setup(t, { backoff: { initial: 30, jitter: 0 } });
  WS.last.serverOpen();
  WS.last.serverClose(1006);
  assert.equal(client.state, "connecting");
  client.close();
  await tick(60);
  assert.equal(WS.instances.length, 1);
  assert.equal(client.state, "closed");
});

it("a request in flight when the connection drops rejects with code disconnected", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  const publish = client.publish("room", 1);
  WS.last.serverClose(1006);
  await assert.rejects(publish, { name: "TidingsError", code: "disconnected" });
});

it("backoff grows by factor up to max, and resets once a round trip succeeds", async (t) => {
  const { client, WS } = setup(t, { backoff: { initial: 1, factor: 2, max: 4, jitter: 0 } });
  const delays = [];
  client.on("reconnecting", (e) => delays.push([e.attempt, e.delay]));
  for (let i = 1; i <= 4; i++) {
    WS.last.serverClose(1006); // the connection fails before opening
    await until(() => WS.instances.length === i + 1);
  }
  assert.deepEqual(delays, [[1, 1], [2, 2], [3, 4], [4, 4]]);

  // Opening is not enough (the server may accept and drop at once)...
  WS.last.serverOpen();
  WS.last.serverClose(1011);
  await until(() => WS.instances.length === 6);
  assert.deepEqual(delays.at(-1), [5, 4]);
  // ...a round trip is: with no topic to resubscribe, the client pings.
  WS.last.serverOpen();
  const [ping] = WS.last.framesOf("ping");
  assert.ok(ping, "the client pings after reconnecting");
  WS.last.reply(ping);
  WS.last.serverClose(1011);
  assert.deepEqual(delays.at(-1), [1, 1]);
});

it("jitter shortens the delay by up to jitter * delay", (t) => {
  t.mock.method(Math, "random", () => 1);
  const { client, WS } = setup(t, { backoff: { initial: 1000, max: 15000, factor: 2, jitter: 0.5 } });
  const delays = [];
  client.on("reconnecting", (e) => delays.push(e.delay));
  WS.last.serverClose(1006);
  assert.deepEqual(delays, [500]);
  client.close(); // don't wait for it
});

it("topics subscribed while disconnected are subscribed once on open; unsubscribed ones are not", async (t) => {
  const { client, WS } = setup(t);
  WS.last.serverOpen();
  WS.last.serverClose(1006);
  const kept = client.subscribe("kept", () => {});
  const dropped = client.subscribe("dropped", () => {});
  dropped.unsubscribe();
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  assert.deepEqual(WS.last.frames.filter((f) => f.op !== "ping").map((f) => [f.op, f.topic]), [["subscribe", "kept"]]);
  WS.last.reply(WS.last.framesOf("subscribe")[0], { topic: "kept", position: "ep:2" });
  assert.equal((await kept.ready).position, "ep:2");
});

it("a subscribe that never got its reply is sent again on the next socket, and ready resolves then", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("room", () => {}, { since: "ep:5" });
  WS.last.serverOpen();
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  const [frame] = WS.last.framesOf("subscribe");
  assert.deepEqual(frame, { id: 2, op: "subscribe", topic: "room", since: "ep:5" });
  WS.last.reply(frame, { topic: "room", position: "ep:5", recovered: true });
  assert.equal((await sub.ready).recovered, true);
});

it("a resubscribe the server now refuses ends the subscription with an error event", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("room", () => {});
  const errors = [];
  sub.on("error", (error) => errors.push(error.code));
  openAndSubscribe(WS.last);
  await sub.ready;
  WS.last.serverClose(1012);
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  WS.last.fail(WS.last.framesOf("subscribe")[0], "forbidden", "no longer");
  assert.deepEqual(errors, ["forbidden"]);
  assert.equal(sub.active, false);
});

it("the url defaults to ws(s)://<location.host>/realtime/ws in a browser and is required in Node", (t) => {
  const WS = fakeWebSocket();
  assert.throws(() => connect(undefined, { WebSocket: WS }), TypeError);
  t.after(() => delete globalThis.location);
  globalThis.location = { href: "https://example.com/rooms/1", protocol: "https:", host: "example.com" };
  const secure = connect({ WebSocket: WS });
  globalThis.location = { href: "http://localhost:8000/", protocol: "http:", host: "localhost:8000" };
  const plain = connect(undefined, { WebSocket: WS });
  const relative = connect("/other/ws", { WebSocket: WS });
  assert.deepEqual(WS.instances.map((ws) => ws.url), [
    "wss://example.com/realtime/ws",
    "ws://localhost:8000/realtime/ws",
    "ws://localhost:8000/other/ws",
  ]);
  for (const client of [secure, plain, relative]) client.close();
});

it("autoconnect: false waits for open()", (t) => {
  const { client, WS } = setup(t, { autoconnect: false });
  assert.equal(WS.instances.length, 0);
  assert.equal(client.state, "closed");
  client.open();
  assert.equal(WS.instances.length, 1);
  assert.equal(client.state, "connecting");
});

test("a resume that is not recovered fires \"gap\"; a recovered one does not", { timeout: 5000 }, async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("room", () => {});
  const gaps = [];
  sub.on("gap", (reply) => gaps.push(reply));
  WS.last.serverOpen();
  WS.last.reply(WS.last.framesOf("subscribe")[0], { topic: "room", position: "e:5" });
  await sub.ready;
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 2);
  WS.last.serverOpen();
  let [again] = WS.last.framesOf("subscribe");
  assert.equal(again.since, "e:5");
  WS.last.reply(again, { topic: "room", position: "e:6", recovered: true });
  await tick(5);
  assert.deepEqual(gaps, []);
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 3);
  WS.last.serverOpen();
  [again] = WS.last.framesOf("subscribe");
  WS.last.reply(again, { topic: "room", position: "f:2", recovered: false });
  await until(() => gaps.length === 1);
  assert.equal(gaps[0].position, "f:2");
});

it("after close 4010 (idle, no subscription) the client reconnects only when it is used again", async (t) => {
  const { client, WS } = setup(t);
  const reconnecting = [];
  client.on("reconnecting", (e) => reconnecting.push(e));
  WS.last.serverOpen();
  WS.last.serverClose(4010, "idle: no subscription");
  await tick(20);
  assert.equal(client.state, "closed");
  assert.equal(WS.instances.length, 1);
  assert.deepEqual(reconnecting, []);

  const sub = client.subscribe("news", () => {});       // something to do: connect
  assert.equal(WS.instances.length, 2);
  WS.last.serverOpen();
  WS.last.reply(WS.last.framesOf("subscribe")[0], { topic: "news", position: "ep:0" });
  await sub.ready;
});
