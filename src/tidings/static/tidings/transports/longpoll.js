/** transports/longpoll.js: the long-polling transport. */

import { describe } from "../errors.js";
import { isObject, own } from "../util.js";
import { HttpTransport } from "./http.js";

/**
 * Long-polling, `GET <baseUrl>poll?topic=..[&since=<cursor>]&timeout=<s>`: each answer
 * is `{messages, since, topics}`; the next poll goes at once with the `since` returned.
 * The first poll of a run has timeout=0, so subscriptions are ready without waiting.
 * With a `presence` parameter, each answer also has `presence: {topic: {state} or
 * {count}}`, the whole state each time: the Roster turns it into joins and leaves.
 * A poller is not connected between polls, so it only watches: it asks `true`.
 */
export class LongPollTransport extends HttpTransport {
  _presence(topics) {
    const presence = super._presence(topics);
    for (const topic of presence.keys()) presence.set(topic, true);
    return presence;
  }

  async _connect(run) {
    const callbacks = this._callbacks;
    let timeout = 0;
    for (;;) {
      let response;
      let body;
      try {
        response = await this._get(this._url("poll", run, timeout), "application/json", run.controller.signal);
        if (run !== this._run) return;
        if (!response.ok) return this._refused(run, response);
        body = await response.json();
      } catch (error) {
        return this._fail(run, 1006, describe(error));
      }
      if (run !== this._run) return;
      if (body === null || typeof body !== "object" || !Array.isArray(body.messages) || typeof body.since !== "string") {
        return this._fail(run, 1006, "the server sent a poll answer that cannot be read");
      }
      if (timeout === 0) this._answered(run, body.topics);
      else this._announce(run, body.topics);
      const snapshots = isObject(body.presence) ? body.presence : {};
      for (const topic of run.presence.keys()) {
        const snapshot = own(snapshots, topic);
        if (run !== this._run) return;           // a listener changed the topics
        if (isObject(snapshot)) callbacks.onPresence({ op: "presence", topic, state: snapshot.state, count: snapshot.count });
      }
      for (const message of body.messages) {
        if (run !== this._run) return;           // a callback changed the topics
        if (isObject(message) && message.op === "gap") callbacks.onGap(message);
        else callbacks.onMessage(message);
      }
      run.cursor = body.since.split(",");
      timeout = this._settings.pollTimeout;
    }
  }
}
