/**
 * tidings.js: the browser client of tidings (wire protocol: docs/protocol.md).
 *
 * ES modules with no dependencies and no build step: this one is the entry, the
 * others (beside it, imported relatively) hold the parts; docs/client.md, "Files".
 * It also runs in Node 22+, which has a global WebSocket and fetch.
 *
 * `connect` comes from this file (in a template: {% static 'tidings/tidings.js' %}),
 * then:
 *
 *   const client = connect();                      // ws(s)://<this host>/realtime/ws
 *   const sub = client.subscribe("rooms.lobby", (msg) => show(msg.event, msg.data));
 *   await sub.ready;                               // rejects if the server refuses
 *   await client.publish("rooms.lobby", { text: "hi" });
 *
 * What the client does for you:
 * - matches replies to requests by `id` and turns `ok: false` into a rejected
 *   promise carrying a TidingsError; a subscribe or publish the server refuses is
 *   also told on the console (console.warn), unless `warn: false`;
 * - queues publishes and pings made while not connected (each one waits at most
 *   `timeout` ms, counted from the call, for its reply);
 * - reconnects with exponential backoff and jitter after any close but 1000 and 1009,
 *   and resubscribes every topic with `since` = the last position it saw, so the
 *   server replays what was missed;
 * - drops messages whose position it has already seen for that topic, so a replay
 *   that overlaps what was delivered live reaches your callback only once;
 * - falls back from WebSocket to Server-Sent Events to long-polling when a transport
 *   cannot connect (see `transports`), with the same API and no message lost or
 *   delivered twice: the next transport resumes every topic from its last position.
 *   Over SSE and long-poll, publishes go over `POST <baseUrl>publish`;
 * - keeps each topic's presence (who is there) when asked to:
 *   `client.subscribe(topic, cb, {presence: true | meta})`, then `sub.presence`
 *   (`members`, `count`, `list()`, `update(meta)`, events "sync", "join", "leave",
 *   "change"), the same on every transport.
 */

// No comment in these files may show what imports look like: Django's opt-in rewriting
// of imports (ManifestStaticFilesStorage, support_js_module_import_aggregation) reads
// comments too, and would rewrite, or loop on, what it finds there.
export { Client, connect } from "./client.js";
export { TidingsError } from "./errors.js";
export { Presence, syncDiff, syncState } from "./presence.js";
export { Subscription } from "./subscription.js";
