"""The wire protocol, sans I/O: what clients ask, what they are told, and the frames.

- **Requests** (:class:`Subscribe`, :class:`Unsubscribe`, :class:`Publish`,
  :class:`PresenceQuery`, :class:`Ping`) are what a client may ask, whichever transport
  carried it: a WebSocket frame, the parameters of an SSE or long-poll request, a
  ``POST /realtime/publish`` body, a WebSocket-over-HTTP event. :func:`parse_request`
  is the one place a client's JSON becomes a request or an :class:`Error`.
- **Outputs** (:class:`Joined`, :class:`Answer`, :class:`Error`, :class:`Snapshot`,
  :class:`PresenceFrame`, :class:`Gap`, :class:`Close`) are what the session tells the client, in
  order; each transport renders them in its own format
  (:func:`tidings.core.frames.ws_text`: the WebSocket protocol's frames). They are made
  for every request, so they are plain slotted dataclasses (a frozen one costs twice
  as much to make); nothing changes them once made.

The protocol itself is described in docs/protocol.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

from tidings.core.messages import Message, Position
from tidings.core.topics import event_error, topic_error

RequestId: TypeAlias = int | str | None

MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: larger ids lose digits

# Close codes (docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013  # too many connections at once (CONNECT_RATE): "try again in N s"
CLOSE_FLOOD = 4008
CLOSE_SLOW_CONSUMER = 4009
CLOSE_TOO_MANY = 4029  # the user holds MAX_CONNECTIONS_PER_USER connections already
CLOSE_LOGGED_OUT = 4401  # the user's login ended: logout, password change, deactivation

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
@dataclass(slots=True)
class Joined:
    """A subscription is complete: the topic is at ``position``; the client's stream of
    it continues after ``start`` (``since`` when that was recovered, else ``position``).
    ``recovered`` is ``None`` when no ``since`` was given."""

    id: RequestId
    topic: str
    position: Position
    recovered: bool | None
    start: Position


@dataclass(slots=True)
class Answer:
    """A request succeeded; ``fields`` go into the reply (a request without an id gets none)."""

    id: RequestId
    fields: dict[str, Any]


@dataclass(slots=True)
class Error:
    """A request failed; the client is told ``code`` and ``message`` and stays connected.
    ``topic`` names the topic refused, for clients of several topics at once."""

    id: RequestId
    code: str
    message: str
    topic: str | None = None


@dataclass(slots=True)
class Snapshot:
    """A model feed's rows on ``topic`` at ``position``, before the changes after it."""

    topic: str
    position: Position
    rows: list[dict[str, Any]]


@dataclass(slots=True)
class PresenceFrame:
    """A presence state or diff of a watched topic, already encoded (once for all)."""

    topic: str
    text: str


@dataclass(slots=True)
class Gap:
    """The topic's history was lost under a live subscription (its epoch changed: the
    broker restarted empty or was flushed): messages may be missing before the next
    one. ``position`` is where the topic's stream continues (the client takes it as its
    own, as after ``recovered: false``)."""

    topic: str
    position: Position


@dataclass(slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


@dataclass(slots=True)
class Listening:
    """The client's stream of ``topic`` starts (``on``) or stops, where a proxy holds the
    stream (GRIP): an instruction to the proxy, nothing the client sees."""

    topic: str
    on: bool


# What a client is sent, in order: outputs and messages (live and replayed).
Output: TypeAlias = (
    Joined | Answer | Error | Snapshot | PresenceFrame | Gap | Close | Listening | Message
)
Outcome: TypeAlias = Request | Error | Close


# -- parsing ------------------------------------------------------------------------
class _NotJSON(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's ``json`` reads them, JSON has
    no such values, and a browser's ``JSON.parse`` refuses the frame that holds one."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogate(value: Any) -> bool:
    """Does ``value`` hold a string with an unpaired surrogate (``"\\ud800"`` in JSON)?
    Such a string has no UTF-8 form: writing it to any socket fails."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def loads(text: str, limits: Limits, what: str = "A frame") -> Any:
    """``text`` as strict JSON within the limits, or the :class:`Error` to answer
    (``too_large``, ``bad_request``). The one place client JSON is decoded: WebSocket
    frames, HTTP bodies, query parameters. ``what`` names it in the error messages.

    Strict: ``NaN``/``Infinity`` and unpaired surrogates are refused, so what a client
    sends can be sent on to every other client (a presence meta, a message's data).
    """
    limit = limits.max_frame_bytes
    if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
        return Error(None, "too_large", f"{what} may be at most {limit} bytes.")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        return _too_deep(what, limits)
    except _NotJSON as e:
        return Error(None, "bad_request", f"{what} holds {e}, which JSON does not have.")
    except ValueError:
        return Error(None, "bad_request", f"{what} must be one JSON object.")
    if _depth_over(value, text, limits.max_depth):
        return _too_deep(what, limits)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and lone_surrogate(value):
        return Error(None, "bad_request", f"{what} holds an unpaired surrogate (not UTF-8).")
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
        (type(rid) is int and -MAX_SAFE_INTEGER <= rid <= MAX_SAFE_INTEGER)
        or (type(rid) is str and len(rid) <= 64)
    ):
        return Error(
            None,
            "bad_request",
            "'id' must be a string of at most 64 characters or an integer of at most 2**53-1"
            " (what JavaScript can hold).",
        )
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
