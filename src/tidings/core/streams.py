"""An SSE or long-poll request's parameters as the protocol's requests, and *cursors*:
the positions of a request's topics in one string (SSE's ``id``, long-poll's ``since``).

The same requests and checks as a WebSocket's frames (:mod:`tidings.core.protocol`);
only the shape differs: topics and a cursor in a query string, one JSON ``presence``.
"""

from __future__ import annotations

from typing import Any

from tidings.core.messages import Position
from tidings.core.protocol import Error, Limits, Subscribe, loads, meta_error
from tidings.core.topics import topic_error


def parse_stream(
    topics: list[str], since: str | None, presence: str | None, limits: Limits
) -> list[Subscribe] | Error:
    """The parameters of an SSE or long-poll request as its subscribe requests, one per
    ``topic``: ``since`` is the request's cursor (:func:`parse_cursor`), ``presence`` the
    JSON object topic -> ``true`` (watch) or a meta (track the client with it)."""
    topics = list(dict.fromkeys(topics))
    if not topics:
        return Error(None, "bad_request", "Give at least one 'topic' parameter.")
    if len(topics) > limits.max_subscriptions:
        return Error(None, "bad_request", f"At most {limits.max_subscriptions} topics per request.")
    for topic in topics:
        problem = topic_error(topic, limits.topic_max_length)
        if problem is not None:
            return Error(None, "invalid_topic", f"{topic[:80]!r}: {problem}", topic)
    wanted = _presence(presence, topics, limits)
    if isinstance(wanted, Error):
        return wanted
    try:
        positions = parse_cursor(since, topics) if since else {}
    except ValueError as e:
        return Error(None, "bad_request", f"Cannot resume from {str(since)[:80]!r}: {e}")
    return [Subscribe(None, t, positions.get(t), wanted.get(t)) for t in topics]


def _presence(raw: str | None, topics: list[str], limits: Limits) -> dict[str, Any] | Error:
    if raw is None:
        return {}
    wanted = loads(raw, limits, "'presence'")
    if isinstance(wanted, Error):
        return wanted
    if not isinstance(wanted, dict):
        message = "'presence' must be a JSON object: topic -> true or a meta."
        return Error(None, "bad_request", message)
    for topic, value in wanted.items():
        if topic not in topics:
            message = f"'presence' names {topic[:80]!r}, not a topic of the request."
            return Error(None, "bad_request", message)
        if value is not True:
            problem = meta_error(value)
            if problem is not None:
                return Error(None, "bad_request", f"'presence' of {topic!r}: {problem}", topic)
    return wanted


def parse_cursor(text: str, topics: list[str]) -> dict[str, Position | None]:
    """Positions by topic from a *cursor*: the positions of a request's topics,
    comma-separated in their order (``"k3Xq9a:4,Zt8e1b:0"``; an empty part: from now).
    A single position is taken for the first topic."""
    parts = text.split(",")
    if len(parts) > len(topics):
        raise ValueError("The cursor has more positions than there are topics.")
    return {
        topic: Position.parse(part) if part else None
        for topic, part in zip(topics, parts, strict=False)
    }


def cursor(positions: dict[str, Position], topics: list[str]) -> str:
    """The cursor of ``topics`` at ``positions`` (positions hold no comma: no escaping)."""
    return ",".join(str(positions[t]) for t in topics)
