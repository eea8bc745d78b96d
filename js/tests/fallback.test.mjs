// Falling back from WebSocket to SSE to long-poll, and the HTTP transports themselves:
// the same subscribe/publish API, positions carried over, refusals, reconnects.
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect, TidingsError } from "../../src/tidings/static/tidings/tidings.js";
import { fakeWebSocket, stateOf, tick, until } from "./fake-websocket.mjs";
import { BASE, fakeEventSource, fakeFetch, setupHttp } from "./fake-http.mjs";

// A test that waits for something that never comes fails instead of hanging.
const it = (name, fn) => test(name, { timeout: 5000 }, fn);



/** A message as the server sends it in a poll answer (and over WebSocket). */
function message(topic, position, data = null, event = "message") {
  return { op: "message", topic, position, event, data };
}

/** Record the client's events as [name, detail] pairs. */
function record(client, names = ["transport", "open", "close", "reconnecting", "error"]) {
  const events = [];
  for (const name of names) {
    client.on(name, (arg) => events.push(
      name === "close" ? [name, arg.code, arg.reason]
        : name === "reconnecting" ? [name, arg.attempt]
          : name === "error" ? [name, arg.code]
            : name === "open" ? [name, client.transport]
              : [name, arg],
    ));
  }
  return events;
}

it("without a WebSocket constructor the client uses SSE; messages of two topics reach the right callbacks", async (t) => {
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
  delete globalThis.WebSocket;
  t.after(() => { if (descriptor) Object.defineProperty(globalThis, "WebSocket", descriptor); });
  const fetch = fakeFetch();
  const client = connect({ baseUrl: BASE, fetch, backoff: { initial: 1, max: 1, jitter: 0 } });
  t.after(() => client.close());
  assert.equal(client.transport, "sse");
  assert.equal(client.state, "connecting");

  const a = [];
  const b = [];
  const subA = client.subscribe("a", (msg) => a.push(msg));
  const subB = client.subscribe("b", (msg) => b.push(msg));
  await until(() => fetch.calls.length === 1);
  const [sse] = fetch.calls;
  assert.equal(`${sse.url.origin}${sse.url.pathname}`, "http://test/realtime/sse");
  assert.deepEqual(sse.topics, ["a", "b"], "one stream for both topics");
  assert.equal(sse.since, null);
  assert.equal(sse.headers.get("Accept"), "text/event-stream");
  assert.equal(sse.init.credentials, "same-origin");

  sse.open("e:4,f:0", { a: { position: "e:4" }, b: { position: "f:0" } });
  assert.deepEqual(await subA.ready, { ok: true, topic: "a", position: "e:4" });
  assert.deepEqual(await subB.ready, { ok: true, topic: "b", position: "f:0" });
  assert.equal(client.state, "open");

  sse.event("e:5,f:0", "chat", { text: "hi" });
  sse.event("e:5,f:1", "message", [1, 2]);
  sse.write(": keep-alive\n\n");
  // One event cut anywhere, with CRLF line ends and its data on two lines.
  sse.write("id: e:6,f:1\r\nevent: ch").write('at\r\ndata: {"text":\r').write('\ndata: "yo"}\r\n\r\n');
  await until(() => a.length === 2);
  assert.deepEqual(a, [
    { op: "message", topic: "a", position: "e:5", event: "chat", data: { text: "hi" } },
    { op: "message", topic: "a", position: "e:6", event: "chat", data: { text: "yo" } },
  ]);
  assert.deepEqual(b, [{ op: "message", topic: "b", position: "f:1", event: "message", data: [1, 2] }]);
  assert.equal(subA.position, "e:6");
  assert.equal(subB.position, "f:1");
  assert.equal(fetch.calls.length, 1);
});

it("a WebSocket refused before it opens falls back to SSE at once; transport and publish follow", async (t) => {
  const { client, WS, fetch } = setupHttp(t, { autoconnect: false });
  const events = record(client);
  assert.equal(client.transport, null);
  const got = [];
  const sub = client.subscribe("room", (msg) => got.push(msg.data), { since: "e:2" });
  client.open();
  assert.equal(client.transport, "websocket");
  assert.equal(WS.last.url, "ws://test/realtime/ws");

  WS.last.onerror({ type: "error" }); // as a browser does when the upgrade is refused
  WS.last.serverClose(1006);
  assert.equal(client.transport, "sse");
  await until(() => fetch.to("sse").length === 1);
  const [sse] = fetch.to("sse");
  assert.equal(sse.since, "e:2", "the stream resumes from the position the client had");
  sse.open("e:2", { room: { position: "e:3", recovered: true } });
  sse.event("e:3", "message", "three");
  assert.deepEqual(await sub.ready, { ok: true, topic: "room", position: "e:3", recovered: true });
  await until(() => got.length === 1);
  assert.deepEqual(got, ["three"]);

  const published = client.publish("room", "four");
  await until(() => fetch.to("publish").length === 1);
  fetch.to("publish")[0].respond(200, { ok: true, topic: "room", position: "e:4" });
  assert.equal((await published).position, "e:4");

  await tick(10);
  assert.equal(WS.instances.length, 1, "no second WebSocket");
  assert.deepEqual(WS.last.sent, []);
  assert.deepEqual(events, [
    ["transport", "websocket"],
    ["error", "transport"],
    ["close", 1006, ""],
    ["transport", "sse"],
    ["open", "sse"],
  ]);
});

it("forced long-poll: the loop delivers messages in order and polls again with the since it was given", async (t) => {
  const { client, WS, fetch } = setupHttp(t, { transports: ["longpoll"] });
  assert.equal(client.transport, "longpoll");
  const a = [];
  const b = [];
  const subscribed = [];
  const subA = client.subscribe("a", (msg) => a.push(msg), { since: "e:2" });
  const subB = client.subscribe("b", (msg) => b.push(msg.position));
  subA.on("subscribed", (reply) => subscribed.push(reply.recovered));
  await until(() => fetch.calls.length === 1);
  const first = fetch.calls[0];
  assert.equal(first.url.pathname, "/realtime/poll");
  assert.deepEqual(first.topics, ["a", "b"]);
  assert.equal(first.since, "e:2,", "no position for b yet");
  assert.equal(first.timeout, "0", "the first poll answers at once");
  first.respond(200, {
    messages: [message("a", "e:3", 3, "chat"), message("a", "e:4", 4)],
    since: "e:4,f:0",
    topics: { a: { position: "e:4", recovered: true }, b: { position: "f:0", recovered: false } },
  });
  assert.deepEqual(await subA.ready, { ok: true, topic: "a", position: "e:4", recovered: true });
  assert.deepEqual(await subB.ready, { ok: true, topic: "b", position: "f:0" }, "recovered answers a since only");

  await until(() => fetch.calls.length === 2);
  const second = fetch.calls[1];
  assert.equal(second.since, "e:4,f:0");
  assert.equal(second.timeout, "25");
  second.respond(200, {
    messages: [message("a", "e:4", 4), message("b", "f:1"), message("a", "e:5", 5)],
    since: "e:6,f:1", // the cursor is the server's: the next poll sends it back as it is
    topics: { a: { position: "e:5", recovered: true }, b: { position: "f:1", recovered: true } },
  });
  await until(() => fetch.calls.length === 3);
  assert.equal(fetch.calls[2].since, "e:6,f:1");
  assert.deepEqual(a, [message("a", "e:3", 3, "chat"), message("a", "e:4", 4), message("a", "e:5", 5)]);
  assert.deepEqual(b, ["f:1"]);
  assert.deepEqual(subscribed, [true], "one subscribed event, not one per poll");
  assert.equal(client.state, "open");
  assert.equal(WS.instances.length, 0);
});

it("long-poll: a poll that says it could not resume tells the subscription again, with recovered false", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["longpoll"] });
  const replies = [];
  const sub = client.subscribe("a", () => {});
  sub.on("subscribed", (reply) => replies.push([reply.position, reply.recovered]));
  await until(() => fetch.calls.length === 1);
  fetch.calls[0].respond(200, { messages: [], since: "e:1", topics: { a: { position: "e:1" } } });
  await until(() => fetch.calls.length === 2);
  // The broker restarted without persistence: a new epoch, history lost.
  fetch.calls[1].respond(200, { messages: [], since: "n:0", topics: { a: { position: "n:0", recovered: false } } });
  await until(() => fetch.calls.length === 3);
  assert.deepEqual(replies, [["e:1", undefined], ["n:0", false]]);
  assert.equal(sub.position, "n:0");
  assert.equal(sub.recovered, false);
});

it("publish over HTTP posts JSON with the CSRF token; resolves with the position; rejects with the server's code", async (t) => {
  let cookie = "sessionid=abc; csrftoken=tok%2B1";
  const { client, fetch } = setupHttp(t, { transports: ["longpoll"], cookie: () => cookie });
  const published = client.publish("room", { text: "hi" }, { event: "chat" });
  await until(() => fetch.calls.length === 1);
  const [post] = fetch.calls;
  assert.equal(post.url.href, "http://test/realtime/publish");
  assert.equal(post.method, "POST");
  assert.deepEqual(post.json, { topic: "room", data: { text: "hi" }, event: "chat" });
  assert.equal(post.headers.get("Content-Type"), "application/json");
  assert.equal(post.headers.get("X-CSRFToken"), "tok+1");
  assert.equal(post.init.credentials, "same-origin");
  post.respond(200, { ok: true, topic: "room", position: "e:9" });
  assert.deepEqual(await published, { ok: true, topic: "room", position: "e:9" });

  cookie = "sessionid=abc";
  const forbidden = assert.rejects(client.publish("room", 2), (error) => {
    assert.ok(error instanceof TidingsError);
    assert.equal(error.code, "forbidden");
    assert.equal(error.message, "You may not publish to 'room'.");
    return true;
  });
  const tooLarge = assert.rejects(client.publish("room", "x".repeat(100)), { name: "TidingsError", code: "too_large" });
  const badGateway = assert.rejects(client.publish("room", 3), { name: "TidingsError", code: "transport" });
  const lost = assert.rejects(client.publish("room", 4), { name: "TidingsError", code: "disconnected" });
  // One POST at a time, in order, as frames on a WebSocket.
  const answers = [
    (post) => post.respond(403, { ok: false, error: { code: "forbidden", message: "You may not publish to 'room'." } }),
    (post) => post.respond(413, { ok: false, error: { code: "too_large", message: "The body may be at most 64 bytes." } }),
    (post) => post.respond(502, "<html>Bad Gateway</html>"),
    (post) => post.fail(),
  ];
  for (const [i, answer] of answers.entries()) {
    await until(() => fetch.calls.length === i + 2);
    await tick(5);
    assert.equal(fetch.calls.length, i + 2, "the next POST waits for this one's answer");
    answer(fetch.calls[i + 1]);
  }
  await Promise.all([forbidden, tooLarge, badGateway, lost]);
  assert.equal(fetch.calls[1].headers.get("X-CSRFToken"), null, "no csrftoken cookie, no header");
  assert.deepEqual(fetch.calls.slice(1).map((post) => post.json.data), [2, "x".repeat(100), 3, 4]);

  // No ping endpoint: a ping answers once connected. With no topic, nothing polls.
  assert.deepEqual(await client.ping(), { ok: true });
  assert.deepEqual(fetch.to("poll"), []);
});

it("publish over HTTP times out and aborts its request; close() rejects the ones in flight and queued", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse"], timeout: 30 });
  const slow = client.publish("room", 1);
  await assert.rejects(slow, { code: "timeout" });
  assert.equal(fetch.to("publish")[0].aborted, true);

  const pending = assert.rejects(client.publish("room", 2), { code: "closed" });
  const queued = assert.rejects(client.publish("room", 3), { code: "closed" });
  await until(() => fetch.to("publish").length === 2);
  client.close();
  await Promise.all([pending, queued]);
  assert.equal(fetch.to("publish")[1].aborted, true);
  await tick(5);
  assert.deepEqual(fetch.to("publish").map((post) => post.json.data), [1, 2], "the queued one is never sent");
});

it("an SSE stream that ends or is dropped as a slow consumer resumes with since = the cursor, without duplicates", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse"] });
  const events = record(client, ["open", "close", "reconnecting"]);
  const a = [];
  const b = [];
  const recovered = [];
  const subA = client.subscribe("a", (msg) => a.push(msg.data));
  client.subscribe("b", (msg) => b.push(msg.data));
  subA.on("subscribed", (reply) => recovered.push(reply.recovered));
  await until(() => fetch.calls.length === 1);
  const first = fetch.calls[0];
  first.open("e:1,f:0", { a: { position: "e:1" }, b: { position: "f:0" } });
  first.event("e:2,f:0", "message", "a2").event("e:2,f:1", "message", "b1");
  await until(() => a.length === 1 && b.length === 1);

  first.end();
  await until(() => fetch.calls.length === 2);
  const second = fetch.calls[1];
  assert.equal(second.url.pathname, "/realtime/sse", "SSE worked: it stays");
  assert.deepEqual(second.topics, ["a", "b"]);
  assert.equal(second.since, "e:2,f:1");
  // The server replays from further back than needed: what was seen is dropped.
  second.open("e:1,f:1", { a: { position: "e:3", recovered: true }, b: { position: "f:1", recovered: true } });
  second.event("e:2,f:1", "message", "a2").event("e:3,f:1", "message", "a3");
  await until(() => a.length === 2);
  assert.deepEqual(a, ["a2", "a3"]);

  second.slowConsumer();
  await until(() => fetch.calls.length === 3);
  assert.equal(fetch.calls[2].since, "e:3,f:1");
  assert.deepEqual(b, ["b1"]);
  assert.deepEqual(recovered, [undefined, true]);
  assert.deepEqual(events, [
    ["open", "sse"],
    ["close", 1006, "the stream ended"],
    ["reconnecting", 1],
    ["open", "sse"],
    ["close", 4009, "slow consumer"],
    ["reconnecting", 1],
  ]);
});

for (const transport of ["sse", "longpoll"]) {
  it(`${transport}: a forbidden topic rejects its ready; the other topics go on without it`, async (t) => {
    const { client, fetch } = setupHttp(t, { transports: [transport] });
    const got = [];
    const errors = [];
    const subA = client.subscribe("a", (msg) => got.push(msg.position));
    const secret = client.subscribe("secret", (msg) => got.push(msg.position));
    const subB = client.subscribe("b", (msg) => got.push(msg.position));
    secret.on("error", (error) => errors.push(error.code));
    await until(() => fetch.calls.length === 1);
    assert.deepEqual(fetch.calls[0].topics, ["a", "secret", "b"]);
    fetch.calls[0].respond(403, { ok: false, error: { code: "forbidden", message: "You may not subscribe to 'secret'." } });

    await assert.rejects(secret.ready, (error) => {
      assert.ok(error instanceof TidingsError);
      assert.equal(error.code, "forbidden");
      assert.equal(error.message, "You may not subscribe to 'secret'.");
      return true;
    });
    assert.deepEqual(errors, ["forbidden"]);
    assert.equal(secret.active, false);
    await until(() => fetch.calls.length === 2);
    const again = fetch.calls[1];
    assert.deepEqual(again.topics, ["a", "b"]);
    if (transport === "sse") {
      again.open("e:0,f:0", { a: { position: "e:0" }, b: { position: "f:0" } });
      again.event("e:1,f:0", "message", null);
    } else {
      again.respond(200, {
        messages: [message("a", "e:1")],
        since: "e:1,f:0",
        topics: { a: { position: "e:0" }, b: { position: "f:0" } },
      });
    }
    assert.equal((await subA.ready).position, "e:0");
    assert.equal((await subB.ready).position, "f:0");
    await until(() => got.length === 1);
    assert.deepEqual(got, ["e:1"]);
    assert.equal(client.transport, transport);
    assert.equal(client.state, "open");
  });
}

it("SSE: subscribing and unsubscribing restart the stream with the cursor of the known positions", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse"] });
  const got = [];
  const subscribedA = [];
  const subA = client.subscribe("a", (msg) => got.push([msg.topic, msg.position]));
  subA.on("subscribed", () => subscribedA.push(1));
  await until(() => fetch.calls.length === 1);
  const first = fetch.calls[0];
  first.open("e:4", { a: { position: "e:4" } });
  first.event("e:5", "message", 5);
  await until(() => got.length === 1);

  const subB = client.subscribe("b", (msg) => got.push([msg.topic, msg.position]));
  const subC = client.subscribe("c", () => {});
  await until(() => fetch.calls.length === 2);
  assert.equal(first.aborted, true);
  const second = fetch.calls[1];
  assert.deepEqual(second.topics, ["a", "b", "c"], "one restart for both subscribes");
  assert.equal(second.since, "e:5,,");
  assert.equal(await stateOf(subB.ready), "pending");
  second.open("e:5,f:2,g:0", {
    a: { position: "e:5", recovered: true },
    b: { position: "f:2", recovered: false },
    c: { position: "g:0", recovered: false },
  });
  assert.deepEqual(await subB.ready, { ok: true, topic: "b", position: "f:2" });
  second.event("e:5,f:3,g:0", "message", "b3");
  await until(() => got.length === 2);
  assert.deepEqual(got, [["a", "e:5"], ["b", "f:3"]]);
  assert.deepEqual(subscribedA, [1], "a was not announced again");

  subA.unsubscribe();
  await until(() => fetch.calls.length === 3);
  assert.equal(second.aborted, true);
  assert.deepEqual(fetch.calls[2].topics, ["b", "c"]);
  assert.equal(fetch.calls[2].since, "f:3,g:0");

  subB.unsubscribe();
  subC.unsubscribe();
  await tick(10);
  assert.equal(fetch.calls[2].aborted, true);
  assert.equal(fetch.calls.length, 3, "no stream without topics");
  assert.equal(client.state, "open");
});

it("long-poll: a change of topics, or close(), aborts the poll in flight", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["longpoll"] });
  const closes = [];
  client.on("close", (event) => closes.push(event.code));
  client.subscribe("a", () => {});
  await until(() => fetch.calls.length === 1);
  fetch.calls[0].respond(200, { messages: [message("a", "e:1")], since: "e:1", topics: { a: { position: "e:1" } } });
  await until(() => fetch.calls.length === 2);
  const holding = fetch.calls[1];
  assert.equal(holding.timeout, "25");

  client.subscribe("b", () => {});
  await until(() => fetch.calls.length === 3);
  assert.equal(holding.aborted, true);
  const restarted = fetch.calls[2];
  assert.deepEqual(restarted.topics, ["a", "b"]);
  assert.equal(restarted.since, "e:1,");
  assert.equal(restarted.timeout, "0");

  client.close();
  assert.equal(restarted.aborted, true);
  await tick(10);
  assert.equal(fetch.calls.length, 3);
  assert.deepEqual(closes, [1000]);
  assert.equal(client.state, "closed");
});

it("SSE that fails before it opens falls back to long-poll, which resumes from the same positions", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse", "longpoll"] });
  const transports = record(client, ["transport"]);
  const got = [];
  const sub = client.subscribe("a", (msg) => got.push(msg.position), { since: "e:7" });
  await until(() => fetch.calls.length === 1);
  assert.equal(fetch.calls[0].since, "e:7");
  fetch.calls[0].respond(404, "<html>Not Found</html>"); // no SSE endpoint behind this proxy
  await until(() => fetch.calls.length === 2);
  const poll = fetch.calls[1];
  assert.equal(poll.url.pathname, "/realtime/poll");
  assert.equal(poll.since, "e:7");
  assert.equal(client.transport, "longpoll");
  assert.deepEqual(transports, [["transport", "longpoll"]]);
  poll.respond(200, { messages: [message("a", "e:8")], since: "e:8", topics: { a: { position: "e:8", recovered: true } } });
  assert.equal((await sub.ready).recovered, true);
  await until(() => got.length === 1);
  assert.deepEqual(got, ["e:8"]);
});

it("an SSE stream that never says tidings.open (a buffering proxy) falls back to long-poll after timeout", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse", "longpoll"], timeout: 40 });
  client.subscribe("a", () => {});
  await until(() => fetch.calls.length === 1);
  fetch.calls[0].stream().write(": keep-alive\n\n");
  await until(() => fetch.calls.length === 2);
  assert.equal(fetch.calls[0].aborted, true);
  assert.equal(fetch.calls[1].url.pathname, "/realtime/poll");
  assert.equal(client.transport, "longpoll");
});

it("when no transport connects the client starts over from the first after a delay; one that worked is kept", async (t) => {
  const { client, WS, fetch } = setupHttp(t, { transports: ["websocket", "longpoll"] });
  const events = record(client, ["transport", "reconnecting"]);
  client.subscribe("a", () => {});
  WS.last.serverClose(1006);
  await until(() => fetch.calls.length === 1);
  fetch.calls[0].fail();
  await until(() => WS.instances.length === 2);
  assert.deepEqual(events, [["transport", "longpoll"], ["reconnecting", 1], ["transport", "websocket"]]);

  // This time the WebSocket opens: from now on it is reconnected, not abandoned.
  WS.last.serverOpen();
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 3);
  await tick(10);
  assert.equal(fetch.calls.length, 1);
  assert.equal(client.transport, "websocket");
});

it("where fetch cannot stream, SSE uses EventSource and listens to the event names subscribe() declared", async (t) => {
  const ES = fakeEventSource();
  const client = connect({
    baseUrl: BASE, WebSocket: null, fetch: null, EventSource: ES, backoff: { initial: 1, max: 1, jitter: 0 },
  });
  t.after(() => client.close());
  assert.equal(client.transport, "sse");
  const got = [];
  const sub = client.subscribe("a", (msg) => got.push([msg.event, msg.position, msg.data]), { events: ["chat"] });
  await until(() => ES.instances.length === 1);
  const first = ES.last;
  assert.deepEqual(first.url.searchParams.getAll("topic"), ["a"]);
  assert.deepEqual(first.types.sort(), ["chat", "message", "tidings.close", "tidings.open"]);
  first.serverEvent("tidings.open", "e:0", { topics: { a: { position: "e:0" } } });
  assert.equal((await sub.ready).position, "e:0");
  first.serverEvent("chat", "e:1", { text: "hi" });
  first.serverEvent("message", "e:2", 2);
  assert.deepEqual(got, [["chat", "e:1", { text: "hi" }], ["message", "e:2", 2]]);

  // A new event name needs a new EventSource, which resumes where the last one was.
  client.subscribe("a", () => {}, { events: ["typing"] });
  await until(() => ES.instances.length === 2);
  assert.equal(first.closed, true);
  assert.equal(ES.last.url.searchParams.get("since"), "e:2");
  assert.ok(ES.last.types.includes("typing"));

  // EventSource would retry by itself; the client closes it and reconnects with backoff.
  ES.last.serverError();
  await until(() => ES.instances.length === 3);
  assert.equal(ES.instances[1].closed, true);
  assert.equal(ES.last.url.searchParams.get("since"), "e:2");
  ES.last.serverEvent("tidings.open", "e:2", { topics: { a: { position: "e:2", recovered: true } } });
  assert.equal(client.state, "open");
  await assert.rejects(client.publish("a", 1), { code: "transport" }); // no fetch to POST with
});

it("baseUrl and the WebSocket url are derived from each other", (t) => {
  const WS = fakeWebSocket();
  const options = { WebSocket: WS, fetch: fakeFetch(), autoconnect: false };
  const fromBase = connect({ baseUrl: "https://example.com/rt", ...options });
  assert.equal(fromBase.baseUrl, "https://example.com/rt/");
  assert.equal(fromBase.url, "wss://example.com/rt/ws");
  const fromWs = connect("ws://localhost:8000/realtime/ws", options);
  assert.equal(fromWs.baseUrl, "http://localhost:8000/realtime/");
  assert.throws(() => connect({ transports: ["carrier-pigeon"], baseUrl: "http://x/", ...options }), TypeError);
  assert.throws(() => connect({ transports: ["longpoll"], baseUrl: "http://x/", ...options, fetch: null }), TypeError);

  t.after(() => delete globalThis.location);
  globalThis.location = { href: "https://example.com/rooms/1", protocol: "https:", host: "example.com" };
  const inBrowser = connect(options);
  assert.equal(inBrowser.baseUrl, "https://example.com/realtime/");
  assert.equal(inBrowser.url, "wss://example.com/realtime/ws");
  assert.equal(connect({ baseUrl: "/other/", ...options }).url, "wss://example.com/other/ws");
});

it("a WebSocket that worked, then keeps failing to reopen, falls back mid-stream and resumes", async (t) => {
  const { client, WS, fetch } = setupHttp(t);
  const got = [];
  const sub = client.subscribe("room", (msg) => got.push(msg.data));
  WS.last.serverOpen();
  const [request] = WS.last.framesOf("subscribe");
  WS.last.reply(request, { topic: "room", position: "e:1" });
  await sub.ready;
  WS.last.serverSend(message("room", "e:2", "two"));
  await until(() => got.length === 1);

  WS.last.serverClose(1006);                   // the network drops...
  await until(() => WS.instances.length === 2);
  assert.equal(client.transport, "websocket", "a proven transport is retried first");
  WS.last.serverClose(1006);                   // ...and WebSockets no longer get through
  await until(() => WS.instances.length === 3);
  WS.last.serverClose(1006);
  await until(() => client.transport === "sse");
  await until(() => fetch.to("sse").length === 1);
  const [sse] = fetch.to("sse");
  assert.equal(sse.since, "e:2", "SSE resumes after the last message seen over WebSocket");
  sse.open("e:2", { room: { position: "e:3", recovered: true } });
  sse.event("e:2", "message", "two");          // a duplicate is dropped
  sse.event("e:3", "message", "three");
  await until(() => got.length === 2);
  assert.deepEqual(got, ["two", "three"]);
});
