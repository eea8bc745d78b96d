/**
 * urls.js: the options that default to globals, and where the server is: the
 * WebSocket url and the base url of the HTTP endpoints.
 */

const DEFAULT_BASE = "/realtime/";

/** `options[name]` if given (null: none), else the global of that name. */
export function option(options, name) {
  if (options[name] !== undefined) return options[name];
  const value = globalThis[name];
  // (A browser's fetch must be called on the window.)
  return name === "fetch" && typeof value === "function" ? value.bind(globalThis) : value;
}

/** ws(s): <-> http(s): */
function withScheme(url, secure, ws) {
  const resolved = new URL(url);
  resolved.protocol = ws ? (secure ? "wss:" : "ws:") : (secure ? "https:" : "http:");
  return resolved.href;
}

/**
 * The WebSocket url and the base url of the HTTP endpoints. In a browser, relative
 * urls resolve against the page and both default to /realtime/ on this host. Each
 * is derived from the other when only one is given: ws(s)://h/p/ws <-> http(s)://h/p/.
 */
export function resolveUrls(url, baseUrl) {
  const location = globalThis.location;
  if (baseUrl != null && baseUrl !== "") {
    baseUrl = String(baseUrl);
    if (!location && !/^[a-z][a-z0-9+.-]*:/i.test(baseUrl)) {
      throw new TypeError("tidings: baseUrl must be absolute where there is no `location`");
    }
    const resolved = new URL(baseUrl, location?.href);
    if (!resolved.pathname.endsWith("/")) resolved.pathname += "/";
    baseUrl = resolved.href;
  } else {
    baseUrl = null;
  }
  if (url == null || url === "") {
    if (baseUrl) {
      url = withScheme(new URL("ws", baseUrl), /^(https|wss):$/.test(new URL(baseUrl).protocol), true);
    } else {
      if (!location) throw new TypeError("tidings: connect() needs a url or baseUrl where there is no `location`");
      url = `${DEFAULT_BASE}ws`;
    }
  }
  url = String(url);
  if (location && !/^wss?:/i.test(url)) {
    const resolved = new URL(url, location.href);
    url = withScheme(resolved, resolved.protocol === "https:", true);
  }
  if (!baseUrl) {
    try {
      baseUrl = withScheme(new URL(".", url), /^wss:/i.test(url), false);
    } catch {
      baseUrl = null;                            // a url that is not absolute: WebSocket only
    }
  }
  return { url, baseUrl };
}
