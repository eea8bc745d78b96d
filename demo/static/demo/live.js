// live.js: what every live demo page shares: one tidings client per page, driving the
// header's indicator (connecting / live / reconnecting in N s / offline), and sends
// that wait for the connection instead of timing out. No build step: an ES module.
import { connect } from "../tidings/tidings.js";
import { indicator } from "./ui.js";

export { indicator, limits, localTimes, mark, timeElement, timeZone } from "./ui.js";

// A 5 s cap (the client's default is 15 s): after an outage a page is back within a
// few seconds of the server, and "retry now" is there for the impatient.
export const client = connect({ backoff: { initial: 500, max: 5000, factor: 2, jitter: 0.5 } });
window.tidings = client;
const live = () => indicator.set("live", { transport: client.transport });
// "retry now" (and the browser coming back online): skip the wait before the reconnect.
indicator.retry = () => { if (client.state === "open") live(); else client.open(); };

function bind() {
  client.on("open", live);
  client.on("transport", () => { if (client.state === "open") live(); });
  client.on("close", () => indicator.set(client.state === "closed" || !navigator.onLine ? "offline" : "reconnecting"));
  client.on("reconnecting", ({ delay }) => indicator.set(navigator.onLine ? "reconnecting" : "offline", { delay }));
  window.addEventListener("offline", () => indicator.set("offline"));
  window.addEventListener("online", () => { indicator.set("connecting"); indicator.retry(); });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && indicator.state === "reconnecting") indicator.retry();
  });
  if (client.state === "open") live(); else indicator.set("connecting");
}
bind();

/** Wait for the connection (no timeout: a send made offline goes once it is back). */
function opened() {
  if (client.state === "open") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { client.off("open", done); resolve(); };
    client.on("open", done);
  });
}

/** What went wrong with a send, in words for the person who sent it. */
export function explain(error) {
  switch (error?.code) {
    case "timeout": return "The server did not answer in time, so this may not have been saved. Try again.";
    case "disconnected": return "The connection dropped before the server answered. Try again.";
    case "closed": return "This page is no longer connected. Reload it.";
    default: return error?.message || String(error);
  }
}

/**
 * Publish `data` to `topic`; while the page is not connected the send waits (and
 * `onPending()` is told) instead of timing out. Resolves with the reply; rejects with
 * an Error whose message is `explain()`'s.
 */
export async function send(topic, data, { onPending } = {}) {
  if (client.state !== "open") {
    onPending?.();
    await opened();
  }
  try {
    return await client.publish(topic, data);
  } catch (error) {
    const out = new Error(explain(error));
    out.code = error?.code;
    throw out;
  }
}

