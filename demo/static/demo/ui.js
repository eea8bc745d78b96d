// ui.js: the parts of every demo page that need no connection: the header's
// connection indicator, stated input limits (a counter, never a silent cut), times in
// the browser's time zone, and pending / failed marks. live.js adds the connection.
const $ = (id) => document.getElementById(id);
const LABELS = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };

/** The header's indicator: live.js drives it from the client, a page may drive it itself. */
export const indicator = {
  state: "connecting",
  retry: () => {},        // live.js: reconnect now; a page may set its own
  _tick: null,
  set(state, { transport = "", delay = 0 } = {}) {
    const box = $("conn");
    if (!box) return;
    clearInterval(this._tick);
    this.state = state;
    box.hidden = false;
    box.dataset.state = state;
    document.body.dataset.conn = state;
    $("transport").textContent = state === "live" ? transport : "";
    $("conn-retry").hidden = !(state === "reconnecting" || state === "offline");
    const text = $("conn-text");
    text.textContent = LABELS[state];
    if (state === "reconnecting" && delay > 0) {
      const until = Date.now() + delay;
      const show = () => {
        const left = Math.ceil((until - Date.now()) / 1000);
        text.textContent = left > 0 ? `reconnecting in ${left} s` : LABELS.reconnecting;
        if (left <= 0) clearInterval(this._tick);
      };
      show();
      this._tick = setInterval(show, 250);
    }
  },
};

$("conn-retry")?.addEventListener("click", () => { indicator.set("connecting"); indicator.retry(); });

const number = new Intl.NumberFormat();

/** Inputs with `data-limit` get a counter, and refuse (not cut) what is too long. */
export function limits(root = document) {
  for (const input of root.querySelectorAll("[data-limit]")) {
    if (input.dataset.limited) continue;
    input.dataset.limited = "1";
    const limit = Number(input.dataset.limit);
    const count = document.createElement("small");
    count.className = "count";
    count.id = `${input.id}-count`;
    count.setAttribute("aria-live", "polite");
    input.after(count);
    const update = () => {
      const n = input.value.length;
      const over = n - limit;
      count.textContent = over > 0
        ? `${number.format(n)} / ${number.format(limit)}: ${number.format(over)} too many`
        : `${number.format(n)} / ${number.format(limit)}`;
      count.classList.toggle("over", over > 0);
      count.hidden = n < limit * 0.8 && over <= 0;
      input.setCustomValidity(over > 0 ? `At most ${number.format(limit)} characters; this has ${number.format(n)}.` : "");
    };
    input.addEventListener("input", update);
    input.form?.addEventListener("reset", () => setTimeout(update));
    update();
  }
}
limits();

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** A `<time>` of an ISO timestamp, shown as HH:MM:SS in the browser's time zone. */
export function timeElement(iso) {
  const el = document.createElement("time");
  el.dateTime = iso;
  localTimes(el);
  return el;
}

/** Show every `<time datetime>` under `root` in the browser's time zone (the server
 * renders them in UTC, which this replaces: one zone on the whole page). */
export function localTimes(root = document) {
  const all = root instanceof HTMLTimeElement ? [root] : root.querySelectorAll("time[datetime]");
  for (const el of all) {
    const when = new Date(el.dateTime);
    if (Number.isNaN(when.getTime())) continue;
    el.textContent = clock.format(when);
    el.title = full.format(when);
  }
  for (const el of document.querySelectorAll("[data-time-zone]")) el.textContent = timeZone;
}
localTimes();

/** Mark `el` with a state (pending / failed) and a note; `retry` adds a retry button. */
export function mark(el, state, note = "", retry = null) {
  el.dataset.sendState = state;
  el.querySelector(".send-note")?.remove();
  if (!state) return;
  const span = document.createElement("span");
  span.className = "send-note";
  span.textContent = note;
  if (retry) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link retry";
    button.textContent = "retry";
    button.addEventListener("click", retry);
    span.append(" ", button);
  }
  el.append(span);
}
