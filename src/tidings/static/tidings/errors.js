/**
 * errors.js: TidingsError, the error every promise of tidings.js rejects with, and
 * the helpers that make, describe and report errors.
 */

/**
 * The error every promise of tidings.js rejects with.
 * `code` is the server's error code (e.g. "forbidden", "rejected") or one of the
 * client's own: "timeout" (no reply in time), "disconnected" (the connection dropped
 * before the reply), "closed" (client.close() was called), "unsubscribed",
 * "bad_frame" (the server sent something that is not a JSON object), "transport",
 * "unsupported" (e.g. a presence meta update over long-polling).
 */
export class TidingsError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message) {
    super(message || code);
    this.name = "TidingsError";
    this.code = code;
  }
}

/** The errors made of a server's `ok: false` reply, as opposed to the client's own. */
const REFUSALS = new WeakSet();

/** Turn an `ok: false` reply into a TidingsError. */
export function errorFromReply(reply) {
  const detail = reply.error || {};
  const error = new TidingsError(String(detail.code || "unknown"), detail.message);
  REFUSALS.add(error);
  return error;
}

/** Whether `error` is the server's answer to a request (errorFromReply made it). */
export function isRefusal(error) {
  return REFUSALS.has(error);
}

/** Report an exception thrown by user code without breaking the loop that called it. */
export function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else setTimeout(() => { throw error; });
}

/** The message of anything thrown. */
export function describe(error) {
  return String(error?.message ?? error);
}
