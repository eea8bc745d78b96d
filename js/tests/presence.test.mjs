// Presence: the pure syncState/syncDiff, and sub.presence over WebSocket, SSE and
// long-poll (state, diffs, counts, meta updates, reconnects, buffering).
import { test } from "node:test";
import assert from "node:assert/strict";

import { syncDiff, syncState, TidingsError } from "../../src/tidings/static/tidings/tidings.js";
import { setup, stateOf, tick, until } from "./fake-websocket.mjs";
import { setupHttp } from "./fake-http.mjs";

// A test that waits for something that never comes fails instead of hanging.
const it = (name, fn) => test(name, { timeout: 5000 }, fn);

const ALICE = { name: "alice" };
const BOB = { name: "bob" };

/** A member as the server sends it: {info, metas}. */
function member(info, ...metas) {
  return { info, metas };
}


/** Record a Presence's events: [name, key, refs, first/last] and [name, keys]. */
function record(presence) {
  const events = [];
  const refs = (m) => m.metas.map((meta) => meta.ref);
  presence.on("sync", (members) => events.push(["sync", [...members.keys()]]));
  presence.on("join", (key, joined, { first }) => events.push(["join", key, refs(joined), first]));
  presence.on("leave", (key, left, { last }) => events.push(["leave", key, refs(left), last]));
  presence.on("change", (members) => events.push(["change", [...members.keys()]]));
  return events;
}

/** Record what the pure functions report through their callbacks. */
function calls() {
  const seen = [];
  return {
    seen,
    onJoin: (key, joined, { first, current }) => seen.push(["join", key, joined.metas.map((m) => m.ref), first, current?.metas.map((m) => m.ref)]),
    onLeave: (key, left, { last, current }) => seen.push(["leave", key, left.metas.map((m) => m.ref), last, current?.metas.map((m) => m.ref)]),
  };
}

/** Open the socket and answer its subscribe frames. */
function openAndSubscribe(ws, position = "e:0") {
  ws.serverOpen();
  for (const frame of ws.framesOf("subscribe")) ws.reply(frame, { topic: frame.topic, position });
}

// --- the pure functions --------------------------------------------------------

it("syncState: a first state joins every key; a new one reports first joins, last leaves, meta updates and new tabs", () => {
  const a1 = { ref: "a1", state: "viewing" };
  const b1 = { ref: "b1", state: "viewing" };
  const c1 = { ref: "c1" };
  const first = { 42: member(ALICE, a1), 43: member(BOB, b1), 44: member({ name: "carol" }, c1) };
  const start = calls();
  const state = syncState({}, first, start.onJoin, start.onLeave);
  assert.deepEqual(state, first);
  assert.notEqual(state, first, "a new object");
  assert.deepEqual(start.seen, [
    ["join", "42", ["a1"], true, ["a1"]],
    ["join", "43", ["b1"], true, ["b1"]],
    ["join", "44", ["c1"], true, ["c1"]],
  ]);

  // alice opened a second tab and her first changed its meta; bob left; carol is as she was.
  const a1edit = { ref: "a1", state: "editing" };
  const a2 = { ref: "a2", state: "viewing" };
  const newState = { 42: member(ALICE, a1edit, a2), 44: member({ name: "carol" }, c1), 45: member({ name: "dan" }, { ref: "d1" }) };
  const frozen = JSON.stringify(state);
  const later = calls();
  const next = syncState(state, newState, later.onJoin, later.onLeave);
  assert.deepEqual(next, newState);
  assert.equal(JSON.stringify(state), frozen, "the old state is not changed");
  assert.deepEqual(later.seen, [
    ["join", "42", ["a1", "a2"], false, ["a1", "a2"]],   // a1's new meta, and the new tab
    ["join", "45", ["d1"], true, ["d1"]],
    ["leave", "42", ["a1"], false, ["a1", "a2"]],        // a1's old meta: alice stays
    ["leave", "43", ["b1"], true, undefined],
  ]);
  assert.deepEqual(syncState(next, newState), next, "the same state again changes nothing");
  const none = calls();
  syncState(next, structuredClone(newState), none.onJoin, none.onLeave);
  assert.deepEqual(none.seen, [], "and reports nothing");
});

it("syncDiff: first join, second tab, meta update as leave+join of one ref, last leave; inputs unchanged", () => {
  const a1 = { ref: "a1", state: "viewing" };
  let state = {};
  const log = calls();
  const step = (diff) => {
    const before = JSON.stringify(state);
    const frozenDiff = JSON.stringify(diff);
    const next = syncDiff(state, diff, log.onJoin, log.onLeave);
    assert.equal(JSON.stringify(state), before, "the state given is not changed");
    assert.equal(JSON.stringify(diff), frozenDiff, "nor the diff");
    assert.notEqual(next, state);
    state = next;
  };

  step({ joins: { 42: member(ALICE, a1) }, leaves: {} });
  assert.deepEqual(state, { 42: member(ALICE, a1) });
  step({ joins: { 42: member(ALICE, { ref: "a2", state: "viewing" }) }, leaves: {} });
  assert.deepEqual(state[42].metas.map((m) => m.ref), ["a1", "a2"]);
  // a1 changes its meta: the old one leaves and the new one joins, with the same ref.
  step({ joins: { 42: member(ALICE, { ref: "a1", state: "editing" }) }, leaves: { 42: member(ALICE, a1) } });
  assert.deepEqual(state, { 42: member(ALICE, { ref: "a2", state: "viewing" }, { ref: "a1", state: "editing" }) });
  // A join of a ref that is there replaces its meta, even without its leave.
  step({ joins: { 42: member(ALICE, { ref: "a2", state: "away" }) } });
  assert.deepEqual(state, { 42: member(ALICE, { ref: "a1", state: "editing" }, { ref: "a2", state: "away" }) });
  step({ joins: {}, leaves: { 42: member(ALICE, { ref: "a2", state: "away" }) } });
  step({ joins: {}, leaves: { 42: member(ALICE, { ref: "a1", state: "editing" }) } });
  assert.deepEqual(state, {}, "a key without metas is gone");
  assert.deepEqual(log.seen, [
    ["join", "42", ["a1"], true, ["a1"]],
    ["join", "42", ["a2"], false, ["a1", "a2"]],
    ["join", "42", ["a1"], false, ["a2", "a1"]],
    ["leave", "42", ["a1"], false, ["a2", "a1"]],
    ["join", "42", ["a2"], false, ["a1", "a2"]],
    ["leave", "42", ["a2"], false, ["a1"]],
    ["leave", "42", ["a1"], true, undefined],
  ]);
});

it("syncDiff: several tabs of one key; unknown leaves and repeated joins change and report nothing", () => {
  const tabs = member(BOB, { ref: "t1" }, { ref: "t2" }, { ref: "t3" });
  const log = calls();
  let state = syncDiff({}, { joins: { bob: tabs } }, log.onJoin, log.onLeave);
  assert.deepEqual(log.seen, [["join", "bob", ["t1", "t2", "t3"], true, ["t1", "t2", "t3"]]]);
  const same = syncDiff(state, { joins: { bob: member(BOB, { ref: "t2" }) }, leaves: { bob: member(BOB, { ref: "zz" }), eve: member({}, { ref: "e1" }) } }, log.onJoin, log.onLeave);
  assert.deepEqual(same, state);
  assert.equal(log.seen.length, 1, "nothing to report");

  state = syncDiff(state, { leaves: { bob: member(BOB, { ref: "t1" }, { ref: "t3" }) } }, log.onJoin, log.onLeave);
  assert.deepEqual(state, { bob: member(BOB, { ref: "t2" }) });
  state = syncDiff(state, { leaves: { bob: member(BOB, { ref: "t2" }) } }, log.onJoin, log.onLeave);
  assert.deepEqual(state, {});
  assert.deepEqual(log.seen.slice(1), [
    ["leave", "bob", ["t1", "t3"], false, ["t2"]],
    ["leave", "bob", ["t2"], true, undefined],
  ]);

  // A member key is the app's: "__proto__" is a key like any other.
  const odd = syncDiff({}, JSON.parse('{"joins": {"__proto__": {"info": {}, "metas": [{"ref": "p1"}]}}}'));
  assert.deepEqual(Object.keys(odd), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(odd), Object.prototype);
  assert.deepEqual(Object.keys(syncState(odd, {})), []);
});

// --- WebSocket -----------------------------------------------------------------

it("WebSocket: subscribe sends presence; the state then diffs update members, count, list() and fire sync/join/leave/change", async (t) => {
  const { client, WS } = setup(t);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const sub = client.subscribe("docs.7", () => {}, { presence: { state: "viewing" } });
  const watcher = client.subscribe("docs.8", () => {}, { presence: true });
  const plain = client.subscribe("news", () => {});
  WS.last.serverOpen();
  assert.deepEqual(WS.last.frames, [
    { id: 1, op: "subscribe", topic: "docs.7", presence: { state: "viewing" } },
    { id: 2, op: "subscribe", topic: "docs.8", presence: true },
    { id: 3, op: "subscribe", topic: "news" },
  ]);
  const ws = WS.last;
  const events = record(sub.presence);
  const members = sub.presence.members;
  assert.equal(members.size, 0);
  assert.deepEqual(sub.presence.count, { members: 0, connections: 0 });
  for (const frame of ws.framesOf("subscribe")) ws.reply(frame, { topic: frame.topic, position: "e:0" });
  await sub.ready;

  const a1 = { ref: "a1", state: "viewing" };
  const b1 = { ref: "b1", state: "viewing" };
  ws.serverSend({ op: "presence", topic: "docs.7", state: { 43: member(BOB, b1), 42: member(ALICE, a1) } });
  assert.deepEqual(events, [
    ["join", "42", ["a1"], true],
    ["join", "43", ["b1"], true],
    ["sync", ["42", "43"]],
    ["change", ["42", "43"]],
  ]);
  assert.deepEqual(sub.presence.members.get("42"), member(ALICE, a1));
  assert.deepEqual(sub.presence.count, { members: 2, connections: 2 });

  events.length = 0;
  const a2 = { ref: "a2", state: "editing" };
  ws.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 42: member(ALICE, a2) }, leaves: {} });
  assert.deepEqual(events, [["join", "42", ["a2"], false], ["change", ["42", "43"]]]);
  assert.deepEqual(sub.presence.count, { members: 2, connections: 3 });

  events.length = 0;
  const a1edit = { ref: "a1", state: "editing" };
  ws.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 42: member(ALICE, a1edit) }, leaves: { 42: member(ALICE, a1) } });
  assert.deepEqual(events, [["join", "42", ["a1"], false], ["leave", "42", ["a1"], false], ["change", ["42", "43"]]]);
  assert.deepEqual(sub.presence.members.get("42").metas, [a2, a1edit]);

  events.length = 0;
  ws.serverSend({ op: "presence_diff", topic: "docs.7", joins: {}, leaves: { 43: member(BOB, b1) } });
  assert.deepEqual(events, [["leave", "43", ["b1"], true], ["change", ["42"]]]);
  assert.deepEqual(sub.presence.list(), [{ key: "42", info: ALICE, metas: [a2, a1edit] }]);
  assert.deepEqual(sub.presence.count, { members: 1, connections: 2 });
  assert.equal(sub.presence.members, members, "members is one Map, always current");

  // Other topics are untouched; a topic whose presence is not watched ignores frames.
  ws.serverSend({ op: "presence", topic: "news", state: { zed: member(BOB, b1) } });
  assert.equal(watcher.presence.members.size, 0);
  assert.equal(plain.presence.members.size, 0);
  assert.deepEqual(plain.presence.list(), []);
  assert.deepEqual(errors, []);

  // A second Subscription that wants presence on that topic subscribes it anew.
  const later = client.subscribe("news", () => {}, { presence: true });
  assert.deepEqual(ws.frames.slice(-2).map(({ id, ...rest }) => rest), [
    { op: "unsubscribe", topic: "news" },
    { op: "subscribe", topic: "news", since: "e:0", presence: true },
  ]);
  ws.reply(ws.frames.at(-1), { topic: "news", position: "e:0", recovered: true });
  const newsEvents = record(later.presence);
  ws.serverSend({ op: "presence", topic: "news", state: { zed: member(BOB, b1), amy: member(ALICE, a1) } });
  assert.deepEqual(newsEvents, [
    ["join", "zed", ["b1"], true],
    ["join", "amy", ["a1"], true],
    ["sync", ["amy", "zed"]],
    ["change", ["amy", "zed"]],
  ], "the frame ignored before left nothing behind; members are sorted by key");
  assert.deepEqual(later.presence.list().map((m) => m.key), ["amy", "zed"]);
  assert.equal(plain.presence.members, later.presence.members, "one topic, one presence");
});

it("WebSocket: update(meta) sends the presence op and resolves on its reply; a watch-only topic subscribes anew", async (t) => {
  const { client, WS } = setup(t);
  assert.throws(() => client.subscribe("x", () => {}, { presence: { ref: "mine" } }), TypeError);
  assert.throws(() => client.subscribe("x", () => {}, { presence: "here" }), TypeError);
  const sub = client.subscribe("docs.7", () => {}, { presence: { state: "viewing" } });
  const watcher = client.subscribe("docs.8", () => {}, { presence: true });
  const ws = WS.last;
  openAndSubscribe(ws, "e:3");
  await sub.ready;

  const updated = sub.presence.update({ state: "editing" });
  const [frame] = ws.framesOf("presence");
  assert.deepEqual(frame, { id: 3, op: "presence", topic: "docs.7", meta: { state: "editing" } });
  assert.equal(await stateOf(updated), "pending", "it waits for the reply");
  ws.reply(frame, { topic: "docs.7" });
  assert.equal(await updated, undefined);

  const refused = sub.presence.update({ state: "away" });
  ws.fail(ws.framesOf("presence")[1], "bad_request", "This connection is not tracked on 'docs.7'.");
  await assert.rejects(refused, (error) => error instanceof TidingsError && error.code === "bad_request");

  // Metas the server would refuse are refused here, and not sent.
  const sent = ws.sent.length;
  for (const meta of [{ ref: "mine" }, "editing", [1], { big: "é".repeat(200) }]) {
    await assert.rejects(sub.presence.update(meta), { name: "TidingsError", code: "bad_request" });
  }
  assert.equal(ws.sent.length, sent);

  // Watched but not tracked: the server must subscribe it again, with the meta.
  const tracked = watcher.presence.update({ state: "here" });
  assert.deepEqual(ws.frames.slice(sent).map(({ id, ...rest }) => rest), [
    { op: "unsubscribe", topic: "docs.8" },
    { op: "subscribe", topic: "docs.8", since: "e:3", presence: { state: "here" } },
  ]);
  assert.equal(await stateOf(tracked), "pending");
  const resubscribe = ws.framesOf("subscribe").at(-1);
  ws.reply(resubscribe, { topic: "docs.8", position: "e:3", recovered: true });
  assert.equal(await tracked, undefined);

  sub.unsubscribe();
  await assert.rejects(sub.presence.update({ state: "gone" }), { code: "unsubscribed" });
});

it("WebSocket: counts-only topics update count, with no members", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("stadium", () => {}, { presence: true });
  openAndSubscribe(WS.last);
  await sub.ready;
  const events = record(sub.presence);
  WS.last.serverSend({ op: "presence", topic: "stadium", count: { members: 3, connections: 5 } });
  assert.deepEqual(sub.presence.count, { members: 3, connections: 5 });
  WS.last.serverSend({ op: "presence_diff", topic: "stadium", count: { members: 4, connections: 7 } });
  assert.deepEqual(sub.presence.count, { members: 4, connections: 7 });
  assert.equal(sub.presence.members.size, 0);
  assert.deepEqual(sub.presence.list(), []);
  assert.deepEqual(events, [["sync", []], ["change", []], ["change", []]]);
});

it("WebSocket: diffs that arrive before the state wait for it", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("docs.7", () => {}, { presence: true });
  openAndSubscribe(WS.last);
  await sub.ready;
  const events = record(sub.presence);
  WS.last.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 43: member(BOB, { ref: "b1" }) }, leaves: {} });
  WS.last.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 42: member(ALICE, { ref: "a1" }) }, leaves: {} });
  assert.deepEqual(events, [], "nothing before the state");
  assert.equal(sub.presence.members.size, 0);

  // The state already has a1: applying its diff again after the state changes nothing.
  WS.last.serverSend({ op: "presence", topic: "docs.7", state: { 42: member(ALICE, { ref: "a1" }) } });
  assert.deepEqual(events, [
    ["join", "42", ["a1"], true],
    ["sync", ["42"]],
    ["change", ["42"]],
    ["join", "43", ["b1"], true],
    ["change", ["42", "43"]],
  ]);
  assert.deepEqual([...sub.presence.members.keys()], ["42", "43"]);
});

it("WebSocket: after a reconnect the new state replaces the members, with leaves and joins for the differences", async (t) => {
  const { client, WS } = setup(t);
  const sub = client.subscribe("docs.7", () => {}, { presence: { state: "viewing" } });
  openAndSubscribe(WS.last, "e:1");
  await sub.ready;
  const a1 = { ref: "a1", state: "viewing" };
  WS.last.serverSend({ op: "presence", topic: "docs.7", state: { 42: member(ALICE, a1), 43: member(BOB, { ref: "b1" }) } });
  const events = record(sub.presence);

  WS.last.serverClose(1006);
  assert.deepEqual([...sub.presence.members.keys()], ["42", "43"], "the last known state stays until the new one");
  await until(() => WS.instances.length === 2);
  const ws = WS.last;
  ws.serverOpen();
  assert.deepEqual(ws.framesOf("subscribe"), [{ id: 2, op: "subscribe", topic: "docs.7", since: "e:1", presence: { state: "viewing" } }]);
  ws.reply(ws.framesOf("subscribe")[0], { topic: "docs.7", position: "e:1", recovered: true });
  ws.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 45: member({ name: "eve" }, { ref: "e1" }) }, leaves: {} });
  assert.deepEqual(events, [], "a diff of the new connection waits for its state");
  ws.serverSend({ op: "presence", topic: "docs.7", state: { 42: member(ALICE, a1), 44: member({ name: "dan" }, { ref: "d1" }) } });
  assert.deepEqual(events, [
    ["join", "44", ["d1"], true],
    ["leave", "43", ["b1"], true],
    ["sync", ["42", "44"]],
    ["change", ["42", "44"]],
    ["join", "45", ["e1"], true],
    ["change", ["42", "44", "45"]],
  ]);
  assert.deepEqual([...sub.presence.members.keys()], ["42", "44", "45"]);
});

it("presence frames for a topic with no active subscription are ignored", async (t) => {
  const { client, WS } = setup(t);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const sub = client.subscribe("docs.7", () => {}, { presence: true });
  openAndSubscribe(WS.last);
  await sub.ready;
  WS.last.serverSend({ op: "presence", topic: "docs.7", state: { 42: member(ALICE, { ref: "a1" }) } });
  const events = record(sub.presence);
  sub.unsubscribe();
  assert.equal(sub.presence.members.size, 0, "not watching any more");
  WS.last.serverSend({ op: "presence_diff", topic: "docs.7", joins: { 43: member(BOB, { ref: "b1" }) }, leaves: {} });
  WS.last.serverSend({ op: "presence", topic: "elsewhere", state: { 43: member(BOB, { ref: "b1" }) } });

  const again = client.subscribe("docs.7", () => {}, { presence: true });
  WS.last.serverSend({ op: "presence", topic: "docs.7", state: {} });
  assert.deepEqual(events, []);
  assert.equal(again.presence.members.size, 0, "nothing ignored before leaked into the new subscription");
  assert.deepEqual(errors, []);
});

// --- SSE -----------------------------------------------------------------------

it("SSE: the presence parameter is JSON per topic; tidings.presence events update members and move no position", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse"] });
  const gotA = [];
  const gotB = [];
  const a = client.subscribe("a", (msg) => gotA.push(msg.data), { presence: { state: "viewing" } });
  const b = client.subscribe("b", (msg) => gotB.push([msg.topic, msg.position, msg.data]), { presence: true });
  client.subscribe("c", () => {});
  await until(() => fetch.calls.length === 1);
  const [sse] = fetch.calls;
  assert.deepEqual(sse.topics, ["a", "b", "c"]);
  assert.deepEqual(JSON.parse(sse.url.searchParams.get("presence")), { a: { state: "viewing" }, b: true });
  assert.match(sse.url.search, /presence=%7B%22a%22%3A%7B%22state%22%3A%22viewing%22%7D%2C%22b%22%3Atrue%7D/);
  const events = record(a.presence);

  sse.open("e:1,f:0,g:0", { a: { position: "e:1" }, b: { position: "f:0" }, c: { position: "g:0" } });
  sse.presence({ op: "presence", topic: "a", state: { 42: member(ALICE, { ref: "a1", state: "viewing" }) } });
  sse.presence({ op: "presence", topic: "b", state: {} });
  sse.presence({ op: "presence_diff", topic: "a", joins: { 43: member(BOB, { ref: "b1" }) }, leaves: {} });
  sse.event("e:1,f:1,g:0", "message", "b1");
  await until(() => gotB.length === 1);
  assert.deepEqual(events, [
    ["join", "42", ["a1"], true],
    ["sync", ["42"]],
    ["change", ["42"]],
    ["join", "43", ["b1"], true],
    ["change", ["42", "43"]],
  ]);
  assert.deepEqual(gotB, [["b", "f:1", "b1"]], "the message after presence events is b's");
  assert.deepEqual(gotA, []);
  assert.equal(a.position, "e:1");
  assert.equal(b.position, "f:1");
  assert.equal(b.presence.members.size, 0);

  sse.end();
  await until(() => fetch.calls.length === 2);
  const second = fetch.calls[1];
  assert.equal(second.since, "e:1,f:1,g:0", "the cursor is the messages' only");
  assert.equal(second.url.searchParams.get("presence"), sse.url.searchParams.get("presence"));
});

it("SSE: update(meta) restarts the stream with the new meta and resolves once it restarted", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["sse"] });
  const sub = client.subscribe("a", () => {}, { presence: { state: "viewing" } });
  await until(() => fetch.calls.length === 1);
  const first = fetch.calls[0];
  first.open("e:1", { a: { position: "e:1" } });
  const a1 = { ref: "a1", state: "viewing" };
  first.presence({ op: "presence", topic: "a", state: { 42: member(ALICE, a1) } });
  await until(() => sub.presence.members.size === 1);
  const events = record(sub.presence);

  const updated = sub.presence.update({ state: "editing" });
  await until(() => fetch.calls.length === 2);
  assert.equal(first.aborted, true);
  const second = fetch.calls[1];
  assert.deepEqual(JSON.parse(second.url.searchParams.get("presence")), { a: { state: "editing" } });
  assert.equal(second.since, "e:1");
  await tick(5);
  assert.equal(await stateOf(updated), "pending", "not before the stream restarted");
  second.open("e:1", { a: { position: "e:1", recovered: true } });
  assert.equal(await updated, undefined);

  // The new stream's entry joins; the old one leaves once the server saw it go.
  const a2 = { ref: "a2", state: "editing" };
  second.presence({ op: "presence", topic: "a", state: { 42: member(ALICE, a1, a2) } });
  second.presence({ op: "presence_diff", topic: "a", joins: {}, leaves: { 42: member(ALICE, a1) } });
  await until(() => events.length === 5);
  assert.deepEqual(events, [
    ["join", "42", ["a2"], false],
    ["sync", ["42"]],
    ["change", ["42"]],
    ["leave", "42", ["a1"], false],
    ["change", ["42"]],
  ]);
  assert.deepEqual(sub.presence.list(), [{ key: "42", info: ALICE, metas: [a2] }]);
});

// --- long-poll -----------------------------------------------------------------

it("long-poll: successive snapshots become joins and leaves; update() is unsupported", async (t) => {
  const { client, fetch } = setupHttp(t, { transports: ["longpoll"] });
  const sub = client.subscribe("a", () => {}, { presence: { state: "viewing" } });
  client.subscribe("b", () => {});
  const events = record(sub.presence);
  await until(() => fetch.calls.length === 1);
  assert.deepEqual(JSON.parse(fetch.calls[0].url.searchParams.get("presence")), { a: true }, "a poller only watches");
  const answer = (i, state) => fetch.calls[i].respond(200, {
    messages: [], since: "e:1,f:0", topics: { a: { position: "e:1" }, b: { position: "f:0" } }, presence: { a: { state } },
  });

  answer(0, { 42: member(ALICE, { ref: "a1" }) });
  await until(() => fetch.calls.length === 2);
  assert.deepEqual(events, [["join", "42", ["a1"], true], ["sync", ["42"]], ["change", ["42"]]]);

  events.length = 0;
  answer(1, { 42: member(ALICE, { ref: "a1" }) });
  await until(() => fetch.calls.length === 3);
  assert.deepEqual(events, [], "the same snapshot again says nothing");

  answer(2, { 42: member(ALICE, { ref: "a1" }, { ref: "a2" }), 43: member(BOB, { ref: "b1" }) });
  await until(() => fetch.calls.length === 4);
  assert.deepEqual(events, [["join", "42", ["a2"], false], ["join", "43", ["b1"], true], ["sync", ["42", "43"]], ["change", ["42", "43"]]]);

  events.length = 0;
  answer(3, { 43: member(BOB, { ref: "b1" }) });
  await until(() => fetch.calls.length === 5);
  assert.deepEqual(events, [["leave", "42", ["a1", "a2"], true], ["sync", ["43"]], ["change", ["43"]]]);
  assert.deepEqual(sub.presence.count, { members: 1, connections: 1 });

  await assert.rejects(sub.presence.update({ state: "editing" }), { name: "TidingsError", code: "unsupported" });
  assert.equal(fetch.calls.length, 5, "nothing was sent");
});

it("a fallback from WebSocket to SSE replaces the members with the SSE stream's state", async (t) => {
  const { client, WS, fetch } = setupHttp(t);
  const sub = client.subscribe("a", () => {}, { presence: { state: "viewing" } });
  openAndSubscribe(WS.last, "e:1");
  await sub.ready;
  WS.last.serverSend({ op: "presence", topic: "a", state: { 42: member(ALICE, { ref: "w1" }), 43: member(BOB, { ref: "b1" }) } });
  const events = record(sub.presence);

  WS.last.serverClose(1006);                   // WebSockets stop getting through
  await until(() => WS.instances.length === 2);
  WS.last.serverClose(1006);
  await until(() => WS.instances.length === 3);
  WS.last.serverClose(1006);
  await until(() => fetch.to("sse").length === 1);
  const [sse] = fetch.to("sse");
  assert.deepEqual(JSON.parse(sse.url.searchParams.get("presence")), { a: { state: "viewing" } });
  sse.open("e:1", { a: { position: "e:1", recovered: true } });
  sse.presence({ op: "presence", topic: "a", state: { 42: member(ALICE, { ref: "s1" }) } });
  await until(() => events.length === 5);
  assert.deepEqual(events, [
    ["join", "42", ["s1"], false],
    ["leave", "42", ["w1"], false],
    ["leave", "43", ["b1"], true],
    ["sync", ["42"]],
    ["change", ["42"]],
  ]);
  assert.deepEqual(sub.presence.list(), [{ key: "42", info: ALICE, metas: [{ ref: "s1" }] }]);
});
