// Tokens: `token` and `getToken` (asked before every connect), on every transport.
import { test } from "node:test";
import assert from "node:assert/strict";

import { setup, until } from "./fake-websocket.mjs";
import { BASE, fakeEventSource, setupHttp } from "./fake-http.mjs";

const it = (name, fn) => test(name, { timeout: 5000 }, fn);

it("a token travels as a WebSocket subprotocol beside 'tidings'", async (t) => {
  const { WS } = setup(t, { token: "abc.def" });
  await until(() => WS.instances.length === 1);
  assert.deepEqual(WS.last.protocols, ["tidings", "tidings.token.abc.def"]);
});

it("without a token no subprotocol is offered", async (t) => {
  const { WS } = setup(t);
  await until(() => WS.instances.length === 1);
  assert.equal(WS.last.protocols, undefined);
});

it("getToken is asked again before each reconnect (4401 'token expired')", async (t) => {
  let n = 0;
  const { client, WS } = setup(t, { getToken: async () => `t${++n}` });
  client.subscribe("lobby", () => {});
  await until(() => WS.instances.length === 1);
  assert.deepEqual(WS.last.protocols, ["tidings", "tidings.token.t1"]);
  WS.last.serverOpen();
  WS.last.serverClose(4401, "token expired");
  await until(() => WS.instances.length === 2);
  assert.deepEqual(WS.last.protocols, ["tidings", "tidings.token.t2"]);
});

it("a getToken that fails emits an error and is retried after the backoff", async (t) => {
  let n = 0;
  const errors = [];
  const { client, WS } = setup(t, {
    getToken: () => { n += 1; if (n === 1) throw new Error("offline"); return "fresh"; },
  });
  client.on("error", (e) => errors.push([e.code, e.message]));
  await until(() => WS.instances.length === 1);
  assert.deepEqual(errors, [["token", "getToken() failed: offline"]]);
  assert.deepEqual(WS.last.protocols, ["tidings", "tidings.token.fresh"]);
});

it("SSE and long-poll over fetch send the token as Authorization: Bearer", async (t) => {
  for (const transport of ["sse", "longpoll"]) {
    const { client, fetch } = setupHttp(t, { transports: [transport], token: "tok" });
    client.subscribe("lobby", () => {});
    await until(() => fetch.to(transport === "sse" ? "sse" : "poll").length === 1);
    const [request] = fetch.to(transport === "sse" ? "sse" : "poll");
    assert.equal(request.headers.get("Authorization"), "Bearer tok");
    assert.equal(request.url.searchParams.get("token"), null);  // not in the url
    client.close();
  }
});

it("an EventSource, which sends no header, gets the token in the query", async (t) => {
  const ES = fakeEventSource();
  const { client } = setupHttp(t, { transports: ["sse"], fetch: null, EventSource: ES, token: "tok" });
  client.subscribe("lobby", () => {});
  await until(() => ES.instances.length === 1);
  assert.equal(ES.last.url.searchParams.get("token"), "tok");
  assert.equal(`${ES.last.url.origin}${ES.last.url.pathname}`, `${BASE}sse`);
});
