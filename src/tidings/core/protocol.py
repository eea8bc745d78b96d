"""The wire protocol, sans I/O: what clients ask, what they are told, and the frames.

- **Requests** (:class:`Subscribe`, :class:`Unsubscribe`, :class:`Publish`,
  :class:`PresenceQuery`, :class:`Ping`) are what a client may ask, whichever transport
  carried it: a WebSocket frame, the parameters of an SSE or long-poll request, a
  ``POST /realtime/publish`` body, a WebSocket-over-HTTP event. :func:`parse_request`
  is the one place a client's JSON becomes a request or an :class:`Error`.
- **Outputs** (:class:`Joined`, :class:`Answer`, :class:`Error`, :class:`Snapshot`,
  :class:`PresenceFrame`, :class:`Close`) are what the session tells the client, in
  order; each transport renders them in its own format (:func:`ws_text` renders them
  as the WebSocket protocol's frames).

The protocol itself is described in docs/protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from tidings.core.messages import Message, Position
from tidings.core.topics import event_error, topic_error

RequestId: TypeAlias = int | str | None

# Close codes (docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_FLOOD = 4008
CLOSE_SLOW_CONSUMER = 4009

OPS = ("subscribe", "unsubscribe", "publish", "presence", "ping")
MAX_META_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    """What one client may send: frame size and JSON depth, subscriptions, topic length,
    and frames per second (``rate``, with ``burst`` at once)."""

    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 100
    topic_max_length: int = 200
    rate: float = 100.0
    burst: int = 200
    max_depth: int = 32


# -- requests ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subscribe:
    id: RequestId
    topic: str
    since: Position | None
    presence: dict[str, Any] | bool | None  # True: watch; a dict: track with this meta
    initial: bool = False  # a model feed's snapshot first


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: RequestId
    topic: str


@dataclass(frozen=True, slots=True)
class Publish:
    id: RequestId
    topic: str
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    id: RequestId
    topic: str
    meta: dict[str, Any] | None = None  # given: update this client's meta


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId


Request: TypeAlias = Subscribe | Unsubscribe | Publish | PresenceQuery | Ping


# -- outputs ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Joined:
    """A subscription is complete: the topic is at ``position``; the client's stream of
    it continues after ``start`` (``since`` when that was recovered, else ``position``).
    ``recovered`` is ``None`` when no ``since`` was given."""

    id: RequestId
    topic: str
    position: Position
    recovered: bool | None
    start: Position


@dataclass(frozen=True, slots=True)
class Answer:
    """A request succeeded; ``fields`` go into the reply (a request without an id gets none)."""

    id: RequestId
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed; the client is told ``code`` and ``message`` and stays connected.
    ``topic`` names the topic refused, for clients of several topics at once."""

    id: RequestId
    code: str
    message: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A model feed's rows on ``topic`` at ``position``, before the changes after it."""

    topic: str
    position: Position
    rows: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PresenceFrame:
    """A presence state or diff of a watched topic, already encoded (once for all)."""

    topic: str
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Listening:
    """The client's stream of ``topic`` starts (``on``) or stops, where a proxy holds the
    stream (GRIP): an instruction to the proxy, nothing the client sees."""

    topic: str
    on: bool


# What a client is sent, in order: outputs and messages (live and replayed).
Output: TypeAlias = Joined | Answer | Error | Snapshot | PresenceFrame | Close | Listening | Message
Outcome: TypeAlias = Request | Error | Close


# -- parsing ------------------------------------------------------------------------
def loads(text: str, limits: Limits, what: str = "A frame") -> Any:
    """``text`` as JSON within the limits, or the :class:`Error` to answer (``too_large``,
    ``bad_request``). The one place client JSON is decoded: WebSocket frames, HTTP
    bodies, query parameters. ``what`` names it in the error messages.
    """
    limit = limits.max_frame_bytes
    if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
        return Error(None, "too_large", f"{what} may be at most {limit} bytes.")
    try:
        value = json.loads(text)
    except RecursionError:
        return _too_deep(what, limits)
    except ValueError:
        return Error(None, "bad_request", f"{what} must be one JSON object.")
    if _depth_over(value, text, limits.max_depth):
        return _too_deep(what, limits)
    return value


def _too_deep(what: str, limits: Limits) -> Error:
    return Error(None, "bad_request", f"{what} may nest JSON at most {limits.max_depth} deep.")


def _depth_over(value: Any, text: str, limit: int) -> bool:
    """Does ``value`` nest deeper than ``limit``? Walked only when ``text`` has more
    brackets than that, so common frames cost two ``str.count`` calls."""
    if text.count("[") + text.count("{") <= limit:
        return False
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        nested: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                nested.extend(x for x in v.values() if isinstance(x, dict | list))
            elif isinstance(v, list):
                nested.extend(x for x in v if isinstance(x, dict | list))
        level = nested
    return False


def parse_request(frame: Any, limits: Limits, subscribed: set[str] | frozenset[str]) -> Outcome:
    """A decoded frame as the request it is, or the :class:`Error` to answer it with.

    ``subscribed`` is the client's topics (unsubscribe and presence need one of them).
    """
    if not isinstance(frame, dict):
        return Error(None, "bad_request", "A frame must be one JSON object.")
    rid = frame.get("id")
    if rid is not None and not (
        (isinstance(rid, int) and not isinstance(rid, bool))
        or (isinstance(rid, str) and len(rid) <= 64)
    ):
        return Error(None, "bad_request", "'id' must be an integer or a string of at most 64.")
    op = frame.get("op")
    if not isinstance(op, str):
        return Error(rid, "bad_request", "Missing 'op'.")
    if op == "ping":
        return Ping(rid)
    if op not in OPS:
        return Error(rid, "unknown_op", f"Unknown op {op[:32]!r}; expected one of {OPS}.")
    if "topic" not in frame:
        return Error(rid, "bad_request", f"'{op}' needs a 'topic'.")
    topic = frame["topic"]
    problem = topic_error(topic, limits.topic_max_length)
    if problem is not None:
        return Error(rid, "invalid_topic", problem)
    if op == "subscribe":
        return _subscribe(rid, topic, frame, limits, subscribed)
    if op == "publish":
        return _publish(rid, topic, frame)
    if topic not in subscribed:
        return Error(rid, "not_subscribed", f"Not subscribed to {topic!r}.")
    if op == "unsubscribe":
        return Unsubscribe(rid, topic)
    meta = frame.get("meta")
    if meta is not None:
        problem = meta_error(meta)
        if problem is not None:
            return Error(rid, "bad_request", f"'meta': {problem}")
    return PresenceQuery(rid, topic, meta)


def _subscribe(
    rid: RequestId, topic: str, frame: dict[str, Any], limits: Limits, subscribed: Any
) -> Outcome:
    since = frame.get("since")
    position = None
    if since is not None:
        try:
            position = Position.parse(since)
        except ValueError as e:
            return Error(rid, "bad_request", f"'since': {e}")
    presence = frame.get("presence")
    if presence is False:
        presence = None
    if presence is not None and presence is not True:
        problem = meta_error(presence)
        if problem is not None:
            return Error(rid, "bad_request", f"'presence': {problem}")
    if topic not in subscribed and len(subscribed) >= limits.max_subscriptions:
        return Error(
            rid,
            "too_many_subscriptions",
            f"A connection may hold at most {limits.max_subscriptions} subscriptions.",
        )
    initial = frame.get("initial", False)
    if not isinstance(initial, bool):
        return Error(rid, "bad_request", "'initial' must be true or false.")
    return Subscribe(rid, topic, position, presence, initial)


def _publish(rid: RequestId, topic: str, frame: dict[str, Any]) -> Outcome:
    if "data" not in frame:
        return Error(rid, "bad_request", "'publish' needs 'data'.")
    event = frame.get("event", "message")
    problem = event_error(event)
    if problem is not None:
        return Error(rid, "bad_request", problem)
    return Publish(rid, topic, event, frame["data"])


def meta_error(meta: object) -> str | None:
    """Why ``meta`` cannot be a presence meta (a small JSON object), or ``None``."""
    if not isinstance(meta, dict):
        return "must be true (watch) or an object (the meta to track this connection with)."
    if "ref" in meta:
        return "'ref' is set by the server."
    if len(json.dumps(meta)) > MAX_META_BYTES:
        return f"at most {MAX_META_BYTES} bytes of JSON."
    return None


# -- frames -------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def reply_frame(rid: RequestId, fields: dict[str, Any]) -> str:
    """``{"id", "ok": true, ...fields}``; positions in ``fields`` are written as text."""
    if type(rid) is int and fields.keys() == {"topic", "position"}:
        # the reply to every publish: built by hand (topics and positions need no escaping)
        position = fields["position"]
        position = "null" if position is None else f'"{position}"'
        return f'{{"id":{rid},"ok":true,"topic":"{fields["topic"]}","position":{position}}}'
    out = {"id": rid, "ok": True}
    for name, value in fields.items():
        out[name] = str(value) if isinstance(value, Position) else value
    return _dumps(out)


def error_frame(error: Error) -> str:
    detail = {"code": error.code, "message": error.message}
    return _dumps({"id": error.id, "ok": False, "error": detail})


def joined_fields(joined: Joined) -> dict[str, Any]:
    fields: dict[str, Any] = {"topic": joined.topic, "position": str(joined.position)}
    if joined.recovered is not None:
        fields["recovered"] = joined.recovered
    return fields


def ws_text(output: Output) -> str | None:
    """The WebSocket protocol frame of an output (``None``: nothing to send for it)."""
    if type(output) is Message:
        return output.ws_frame
    if isinstance(output, Joined):
        return None if output.id is None else reply_frame(output.id, joined_fields(output))
    if isinstance(output, Answer):
        return None if output.id is None else reply_frame(output.id, output.fields)
    if isinstance(output, Error):
        return error_frame(output)
    if isinstance(output, PresenceFrame):
        return output.text
    if isinstance(output, Snapshot):
        return _dumps(
            {
                "op": "snapshot",
                "topic": output.topic,
                "position": str(output.position),
                "rows": output.rows,
            }
        )
    return None
