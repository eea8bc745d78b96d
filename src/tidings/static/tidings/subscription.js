/** subscription.js: Subscription, what client.subscribe() returns. */

import { report, TidingsError } from "./errors.js";
import { Emitter } from "./emitter.js";
import { Presence } from "./presence.js";

/**
 * One `client.subscribe()` call. Several Subscriptions to one topic share one server
 * subscription (a "topic entry" inside the client) and so share `position`.
 *
 * Events: "subscribed" (the reply, after the first subscribe and after every
 * resubscribe on reconnect: check `reply.recovered` to know if anything was lost),
 * "gap" (the reply, when a resume could not replay everything missed: the history
 * window was exceeded or the server lost it; or `{topic, position, recovered: false}`
 * when the server's broker lost the topic's history under the live stream; either
 * way, refetch your state), "error" (a
 * TidingsError: the server refused the subscription, which is now over).
 *
 * `presence` (a Presence) is who is on the topic, when subscribed with `presence`.
 */
export class Subscription extends Emitter {
  /** @internal Made by Client.subscribe(). */
  constructor(client, entry, callback) {
    super();
    /** @type {string} */
    this.topic = entry.topic;
    this._client = client;
    this._entry = entry;
    this._callback = callback;
    this._active = true;
    this._settled = false;
    /** @type {Promise<object>} Resolves with the subscribe reply; rejects with a TidingsError. */
    this.ready = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    // A refusal is also told on "error" and the console; a `ready` nobody awaits must not crash Node.
    this.ready.catch(() => {});
    /** @type {Presence} Who is on the topic: see Presence. */
    this.presence = new Presence(this);
  }

  /** @type {string|null} The last position seen for this topic ("<epoch>:<offset>"). */
  get position() { return this._entry.position; }

  /** @type {boolean|undefined} `recovered` from the last subscribe reply. */
  get recovered() { return this._entry.recovered; }

  /** @type {boolean} False once unsubscribed, refused, or the client closed. */
  get active() { return this._active; }

  /** Stop receiving messages. The server is told once the topic's last Subscription goes. */
  unsubscribe() {
    if (!this._active) return;
    this._end(new TidingsError("unsubscribed", `unsubscribed from '${this.topic}' before the reply`));
    this._client._unsubscribe(this);
  }

  _settle(error, reply) {
    if (this._settled) return;
    this._settled = true;
    if (error) this._reject(error);
    else this._resolve(reply);
  }

  _subscribed(reply) {
    this._settle(null, reply);
    this._emit("subscribed", reply);
    if (reply.recovered === false) this._emit("gap", reply);
  }

  /** The topic's history was lost under the live stream (`{topic, position, recovered: false}`). */
  _gap(gap) {
    this._emit("gap", gap);
  }

  /** The server refused: settle `ready` and tell "error" listeners. */
  _fail(error) {
    this._end(error);
    this._emit("error", error);
  }

  /** Become inactive; an unanswered `ready` rejects with `error`. */
  _end(error) {
    this._active = false;
    this._settle(error);
  }

  _deliver(message) {
    try { this._callback(message); } catch (error) { report(error); }
  }
}
