"""The WebSocket protocol, sans I/O: client frames in, requests or errors out.

:class:`Session` holds one connection's protocol state (rate limit, subscription
count) and turns each text frame into a typed request, or into the error the client
must get. It never touches a socket, a clock or the database: the driver
(:mod:`tidings.connection`) passes the time in and does the I/O. Frame builders at
the bottom make every server frame. The protocol is described in docs/protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from tidings.core.messages import Position
from tidings.core.topics import event_error, topic_error

RequestId: TypeAlias = int | str | None

# Close codes (docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_FLOOD = 4008
CLOSE_SLOW_CONSUMER = 4009


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
    meta: dict[str, Any] | None = None  # given: update this connection's meta


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId


@dataclass(frozen=True, slots=True)
class Error:
    """Answer the frame with this error; the connection stays open."""

    id: RequestId
    code: str
    message: str

    def frame(self) -> str:
        return error_frame(self.id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


Request: TypeAlias = Subscribe | Unsubscribe | Publish | PresenceQuery | Ping
Outcome: TypeAlias = Request | Error | Close

OPS = ("subscribe", "unsubscribe", "publish", "presence", "ping")


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 100
    topic_max_length: int = 200
    rate: float = 100.0
    burst: int = 200


class Session:
    """One connection's protocol state. Feed it frames; do what it returns."""

    __slots__ = ("_refilled", "_strikes", "_tokens", "limits", "topics")

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.topics: set[str] = set()
        self._tokens = float(limits.burst)
        self._refilled = now
        self._strikes = 0

    # -- subscriptions, as the driver confirms them -------------------------------
    def subscribed(self, topic: str) -> None:
        self.topics.add(topic)

    def unsubscribed(self, topic: str) -> None:
        self.topics.discard(topic)

    # -- frames ------------------------------------------------------------------
    def receive_bytes(self, data: bytes, now: float) -> Outcome:
        limited = self._rate(now)
        if limited is not None:
            return limited
        return Error(None, "bad_request", "Binary frames are not supported; send JSON text.")

    def receive_text(self, text: str, now: float) -> Outcome:
        limited = self._rate(now)
        if limited is not None:
            return limited
        limit = self.limits.max_frame_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            return Error(None, "too_large", f"Frames may be at most {limit} bytes.")
        try:
            frame = json.loads(text)
        except ValueError:
            return Error(None, "bad_request", "A frame must be one JSON object.")
        if not isinstance(frame, dict):
            return Error(None, "bad_request", "A frame must be one JSON object.")
        return self._parse(frame)

    def _rate(self, now: float) -> Error | Close | None:
        """Token bucket: ``rate`` frames/s, ``burst`` at once; then errors, then a close."""
        limits = self.limits
        self._tokens = min(limits.burst, self._tokens + (now - self._refilled) * limits.rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._strikes = 0
            return None
        self._strikes += 1
        if self._strikes > limits.burst:
            return Close(CLOSE_FLOOD, "rate limit exceeded")
        return Error(None, "rate_limited", f"Slow down: at most {limits.rate:g} frames per second.")

    def _parse(self, frame: dict[str, Any]) -> Outcome:
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
        problem = topic_error(topic, self.limits.topic_max_length)
        if problem is not None:
            return Error(rid, "invalid_topic", problem)
        if op == "subscribe":
            return self._subscribe(rid, topic, frame)
        if op == "publish":
            return self._publish(rid, topic, frame)
        if topic not in self.topics:
            return Error(rid, "not_subscribed", f"Not subscribed to {topic!r}.")
        if op == "unsubscribe":
            return Unsubscribe(rid, topic)
        meta = frame.get("meta")
        if meta is not None:
            problem = meta_error(meta)
            if problem is not None:
                return Error(rid, "bad_request", f"'meta': {problem}")
        return PresenceQuery(rid, topic, meta)

    def _subscribe(self, rid: RequestId, topic: str, frame: dict[str, Any]) -> Outcome:
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
        if topic not in self.topics and len(self.topics) >= self.limits.max_subscriptions:
            return Error(
                rid,
                "too_many_subscriptions",
                f"A connection may hold at most {self.limits.max_subscriptions} subscriptions.",
            )
        initial = frame.get("initial", False)
        if not isinstance(initial, bool):
            return Error(rid, "bad_request", "'initial' must be true or false.")
        return Subscribe(rid, topic, position, presence, initial)

    def _publish(self, rid: RequestId, topic: str, frame: dict[str, Any]) -> Outcome:
        if "data" not in frame:
            return Error(rid, "bad_request", "'publish' needs 'data'.")
        event = frame.get("event", "message")
        problem = event_error(event)
        if problem is not None:
            return Error(rid, "bad_request", problem)
        return Publish(rid, topic, event, frame["data"])


MAX_META_BYTES = 1024


def meta_error(meta: object) -> str | None:
    """Why ``meta`` cannot be a presence meta (a small JSON object), or ``None``."""
    if not isinstance(meta, dict):
        return "must be true (watch) or an object (the meta to track this connection with)."
    if "ref" in meta:
        return "'ref' is set by the server."
    if len(json.dumps(meta)) > MAX_META_BYTES:
        return f"at most {MAX_META_BYTES} bytes of JSON."
    return None


# -- server frames ----------------------------------------------------------------
def reply_frame(rid: RequestId, **fields: Any) -> str:
    if fields.keys() == {"topic", "position"} and isinstance(rid, int):
        # the reply to every publish: built by hand (topics and positions need no escaping)
        position = fields["position"]
        position = "null" if position is None else f'"{position}"'
        return f'{{"id":{rid},"ok":true,"topic":"{fields["topic"]}","position":{position}}}'
    return json.dumps({"id": rid, "ok": True, **fields}, separators=(",", ":"))


def error_frame(rid: RequestId, code: str, message: str) -> str:
    return json.dumps(
        {"id": rid, "ok": False, "error": {"code": code, "message": message}},
        separators=(",", ":"),
    )
