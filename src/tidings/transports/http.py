"""What the HTTP transports share: opening topics for a request, cursors, JSON errors.

A *cursor* is the positions of a request's topics, comma-separated in the order of its
``topic`` parameters: ``"k3Xq9a:4,Zt8e1b:0"``. SSE sends it as each event's ``id``
(so the browser's ``Last-Event-ID`` resumes every topic at once) and long-poll returns
it as ``since`` for the next poll. Positions contain no comma, so it needs no escaping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, JsonResponse

from tidings import policy
from tidings.auth import origin_allowed
from tidings.core.messages import Position
from tidings.core.protocol import meta_error
from tidings.core.topics import topic_error
from tidings.listener import Listener
from tidings.server.node import Node, get_node
from tidings.server.tracker import find_tracked

STATUS = {
    "bad_request": 400,
    "invalid_topic": 400,
    "rejected": 400,
    "forbidden": 403,
    "not_allowed": 405,
    "too_large": 413,
    "internal_error": 500,
    "unavailable": 503,
}


def error(code: str, message: str, topic: str | None = None, **headers: str) -> JsonResponse:
    """``{"ok": false, "error": {"code", "message", "topic"?}}`` with the fitting status.

    ``topic`` names the topic refused, so a client of several topics knows which.
    """
    detail = {"code": code, "message": message}
    if topic is not None:
        detail["topic"] = topic
    return JsonResponse({"ok": False, "error": detail}, status=STATUS[code], headers=headers)


def origin_refused(request: HttpRequest, node: Node) -> JsonResponse | None:
    """403 when the request comes from a page of a foreign site.

    Unlike WebSockets, a missing Origin is let through: browsers send none on their own
    same-origin GETs. A cross-site ``fetch``/``EventSource`` always carries its Origin.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(origin, request.get_host(), node.settings.allowed_origins):
        return None
    return error("forbidden", "Requests from this origin are not allowed.")


async def open_topics(request: HttpRequest, node: Node) -> tuple[Any, list[str]] | JsonResponse:
    """The user and the ``topic`` parameters, each valid and subscribable; or the error."""
    refused = origin_refused(request, node)
    if refused is not None:
        return refused
    topics = list(dict.fromkeys(request.GET.getlist("topic")))
    if not topics:
        return error("bad_request", "Give at least one 'topic' parameter.")
    limit = node.settings.max_subscriptions
    if len(topics) > limit:
        return error("bad_request", f"At most {limit} topics per request.")
    for topic in topics:
        problem = topic_error(topic, node.settings.topic_max_length)
        if problem is not None:
            return error("invalid_topic", f"{topic[:80]!r}: {problem}", topic)
    user = await request.auser()
    for topic in topics:
        if not await policy.may(node, user, "subscribe", topic):
            return error("forbidden", f"You may not subscribe to {topic!r}.", topic)
    return user, topics


def parse_cursor(text: str, topics: list[str]) -> dict[str, Position | None]:
    """Positions by topic from a cursor; a single position is taken for the first topic."""
    parts = text.split(",")
    if len(parts) > len(topics):
        raise ValueError("The cursor has more positions than there are topics.")
    return {
        topic: Position.parse(part) if part else None
        for topic, part in zip(topics, parts, strict=False)
    }


def cursor(positions: dict[str, Position], topics: list[str]) -> str:
    return ",".join(str(positions[t]) for t in topics)


async def health_view(request: HttpRequest) -> JsonResponse:
    """``GET /realtime/health``: 200 ``{"ok": true}`` while this process can deliver, else 503.

    For load balancers and probes. Staff users also get the broker's details
    (reconnects, last error).
    """
    node = get_node()
    health = node.health()
    body: dict[str, Any] = {"ok": health["ok"]}
    user = await request.auser()
    if getattr(user, "is_staff", False):
        body["broker"] = health["broker"]
    return JsonResponse(body, status=200 if health["ok"] else 503)


def parse_presence(request: HttpRequest, topics: list[str]) -> dict[str, Any] | JsonResponse:
    """The ``presence`` parameter: a JSON object, topic -> ``true`` (watch) or a meta
    (track this client with it). Every topic named must be in the request and tracked."""
    raw = request.GET.get("presence")
    if raw is None:
        return {}
    try:
        wanted = json.loads(raw)
    except ValueError:
        wanted = None
    if not isinstance(wanted, dict):
        return error("bad_request", "'presence' must be a JSON object: topic -> true or a meta.")
    for topic, value in wanted.items():
        if topic not in topics:
            return error(
                "bad_request", f"'presence' names {topic[:80]!r}, not a topic of the request."
            )
        if find_tracked(topic) is None:
            return error("bad_request", f"Presence is not enabled on {topic!r}.", topic)
        if value is not True:
            problem = meta_error(value)
            if problem is not None:
                return error("bad_request", f"'presence' of {topic!r}: {problem}", topic)
    return wanted


@dataclass
class StreamRequest:
    """A valid SSE or long-poll request: who, which topics, from where, with what presence."""

    user: Any
    topics: list[str]
    since: dict[str, Position | None]
    presence: dict[str, Any]


async def stream_request(
    request: HttpRequest, node: Node, resume: str | None
) -> StreamRequest | JsonResponse:
    """Check a GET on the SSE or long-poll endpoint; ``resume`` is its cursor, if any."""
    if request.method != "GET":
        return error("not_allowed", "Use GET.", Allow="GET")
    opened = await open_topics(request, node)
    if not isinstance(opened, tuple):
        return opened
    user, topics = opened
    presence = parse_presence(request, topics)
    if not isinstance(presence, dict):
        return presence
    try:
        since = parse_cursor(resume, topics) if resume else {}
    except ValueError as e:
        return error("bad_request", f"Cannot resume from {str(resume)[:80]!r}: {e}")
    return StreamRequest(user, topics, since, presence)


def starting_points(
    listener: Listener, req: StreamRequest
) -> tuple[dict[str, Position], dict[str, Any]]:
    """Where each topic's stream starts (``since`` when it was recovered, else now), and
    what to tell the client of it: the position, and ``recovered`` where it gave one."""
    positions: dict[str, Position] = {}
    info: dict[str, Any] = {}
    for topic in req.topics:
        result = listener.results[topic]
        start = req.since.get(topic)
        positions[topic] = start if result.recovered and start is not None else result.position
        info[topic] = {"position": str(result.position)}
        if start is not None:
            info[topic]["recovered"] = result.recovered
    return positions, info
