/** sse-parser.js: EventStreamParser, an incremental parser of text/event-stream. */

/**
 * An incremental parser of `text/event-stream` (the WHATWG rules): lines end with
 * CRLF, LF or CR; `field: value` (one space after the colon is dropped); lines that
 * begin with ":" are comments (keep-alives); a blank line dispatches the event if it
 * has data. `data` lines join with "\n"; `id` persists as `lastEventId`.
 */
export class EventStreamParser {
  /** @param {(event: {type: string, data: string, lastEventId: string}) => void} onEvent */
  constructor(onEvent) {
    this._onEvent = onEvent;
    this._buffer = "";
    this._start = true;          // a BOM may begin the stream
    this._type = "";
    this._data = [];
    this.lastEventId = "";
    this.retry = null;           // the server's reconnect delay; the client keeps its own
  }

  /** Feed decoded text, any amount, cut anywhere. */
  push(text) {
    text = this._buffer + text;
    if (this._start && text) {
      this._start = false;
      if (text[0] === "\uFEFF") text = text.slice(1);
    }
    // A final CR may be half of a CRLF: keep it for the next chunk.
    const end = text.endsWith("\r") ? text.length - 1 : text.length;
    const lines = text.slice(0, end).split(/\r\n|\r|\n/);
    this._buffer = lines.pop() + text.slice(end);
    for (const line of lines) this._line(line);
  }

  _line(line) {
    if (line === "") return this._dispatch();
    if (line[0] === ":") return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this._type = value;
    else if (field === "data") this._data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  _dispatch() {
    const type = this._type || "message";
    const data = this._data.join("\n");
    const hasData = this._data.length > 0;
    this._type = "";
    this._data = [];
    if (hasData) this._onEvent({ type, data, lastEventId: this.lastEventId });
  }
}
