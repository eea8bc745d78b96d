// Deploys and storms: 1012 reconnects with the backoff; 1013 "try again in N s" waits
// at least N s (the server admits a reconnect storm at a bounded rate).
import { test } from "node:test";
import assert from "node:assert/strict";

import { setup, until } from "./fake-websocket.mjs";

const it = (name, fn) => test(name, { timeout: 5000 }, fn);

/** The delay of the reconnect after the server closes an open socket with `code`. */
async function waitAfter(t, code, reason) {
  const { client, WS } = setup(t);
  const waits = [];
  client.on("reconnecting", (e) => waits.push(e.delay));
  client.subscribe("lobby", () => {});
  await until(() => WS.instances.length === 1);
  WS.last.serverOpen();
  WS.last.serverClose(code, reason);
  return waits;
}

it("after 1013 'try again in N s' the next attempt waits at least N s", async (t) => {
  assert.deepEqual(await waitAfter(t, 1013, "try again in 2.5 s"), [2500]);
});

it("after 1012 (a deploy) it reconnects with the usual backoff", async (t) => {
  assert.deepEqual(await waitAfter(t, 1012, "service restart"), [1]);
});
