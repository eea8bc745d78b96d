// sse-parser.js on its own: text/event-stream cut anywhere, line endings, comments,
// retry, ids (the WHATWG rules the SSE transport relies on).
import { test } from "node:test";
import assert from "node:assert/strict";

import { EventStreamParser } from "../../src/tidings/static/tidings/sse-parser.js";

/** A parser and the events it dispatched. */
function parser() {
  const events = [];
  const p = new EventStreamParser((event) => events.push(event));
  return { p, events };
}

/** The events of `chunks` pushed one after the other. */
function parse(...chunks) {
  const { p, events } = parser();
  for (const chunk of chunks) p.push(chunk);
  return events;
}

const STREAM = "retry: 2000\nid: ep:1,\nevent: tidings.open\ndata: {\"topics\": {}}\n\n"
  + ": keep-alive\n\nid: ep:2,\nevent: chat\ndata: {\"text\":\ndata: \"hi\"}\n\n";
const EVENTS = [
  { type: "tidings.open", data: "{\"topics\": {}}", lastEventId: "ep:1," },
  { type: "chat", data: "{\"text\":\n\"hi\"}", lastEventId: "ep:2," },
];

test("a stream gives the same events however it is cut into chunks", () => {
  assert.deepEqual(parse(STREAM), EVENTS);
  for (let i = 0; i <= STREAM.length; i += 1) {
    assert.deepEqual(parse(STREAM.slice(0, i), STREAM.slice(i)), EVENTS, `cut at ${i}`);
  }
  assert.deepEqual(parse(...STREAM), EVENTS, "one character at a time");
});

test("lines end with LF, CRLF or CR, also mixed, and a CRLF split between chunks is one line end", () => {
  for (const eol of ["\n", "\r\n"]) {
    assert.deepEqual(parse(STREAM.replaceAll("\n", eol)), EVENTS, JSON.stringify(eol));
  }
  // A CR that ends a chunk may be half of a CRLF, so the parser waits for what follows.
  const cr = STREAM.replaceAll("\n", "\r");
  assert.deepEqual(parse(cr), EVENTS.slice(0, 1));
  assert.deepEqual(parse(cr, ": next\r"), EVENTS);
  assert.deepEqual(parse("data: a\r\ndata: b\rdata: c\n\r\n"), [{ type: "message", data: "a\nb\nc", lastEventId: "" }]);
  // Were the CR taken alone, the LF after it would be a blank line: an event "a" too early.
  assert.deepEqual(parse("data: a\r", "\ndata: b\r", "\n\r", "\n"), [{ type: "message", data: "a\nb", lastEventId: "" }]);
  const crlf = STREAM.replaceAll("\n", "\r\n");
  for (let i = 0; i <= crlf.length; i += 1) {
    assert.deepEqual(parse(crlf.slice(0, i), crlf.slice(i)), EVENTS, `CRLF, cut at ${i}`);
  }
});

test("nothing is dispatched before the blank line that ends an event", () => {
  const { p, events } = parser();
  p.push("data: one\n");
  assert.deepEqual(events, []);
  p.push("\n");
  assert.equal(events.length, 1);
});

test("comments are ignored, and so are unknown fields", () => {
  assert.deepEqual(parse(":comment\n: keep-alive\n\n:x\ndata: 1\n: between\nfoo: bar\ndata: 2\n\n"), [
    { type: "message", data: "1\n2", lastEventId: "" },
  ]);
});

test("an event without data is not dispatched, and the next one has the default type again", () => {
  assert.deepEqual(parse("event: chat\n\nid: 7\n\ndata: x\n\n"), [{ type: "message", data: "x", lastEventId: "7" }]);
  assert.deepEqual(parse("event: chat\ndata: a\n\ndata: b\n\n").map((e) => e.type), ["chat", "message"]);
});

test("one space after the colon is dropped, no more; a field without a colon has an empty value", () => {
  assert.deepEqual(parse("data:no space\n\ndata:  two spaces\n\ndata\n\ndata:\n\n").map((e) => e.data), [
    "no space", " two spaces", "", "",
  ]);
});

test("the id persists across events until changed; an id with NUL is ignored; an empty one clears it", () => {
  const events = parse("id: a\ndata: 1\n\ndata: 2\n\nid: b\0c\ndata: 3\n\nid\ndata: 4\n\nid: d\ndata: 5\n\n");
  assert.deepEqual(events.map((e) => e.lastEventId), ["a", "a", "a", "", "d"]);
  const { p } = parser();
  p.push("id: x\n\n");
  assert.equal(p.lastEventId, "x", "an id counts even on an event without data");
});

test("retry takes only digits; the parser keeps the last one (the client keeps its own backoff)", () => {
  const { p, events } = parser();
  assert.equal(p.retry, null);
  p.push("retry: 2000\n\n");
  assert.equal(p.retry, 2000);
  p.push("retry: soon\nretry: 1.5\nretry: -1\n\n");
  assert.equal(p.retry, 2000);
  p.push("retry: 0\n");
  assert.equal(p.retry, 0);
  assert.deepEqual(events, []);
});

test("a BOM is dropped at the start of the stream only", () => {
  assert.deepEqual(parse("\uFEFFdata: a\n\n").map((e) => e.data), ["a"]);
  assert.deepEqual(parse("", "\uFEFF", "data: a\n\n").map((e) => e.data), ["a"]);
  // Later, it is part of a field name: "\uFEFFdata" is no field the parser knows.
  assert.deepEqual(parse("data: a\n\n\uFEFFdata: b\n\n").map((e) => e.data), ["a"]);
});
