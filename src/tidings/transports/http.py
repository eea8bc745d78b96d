"""What the HTTP transports share: JSON errors, the origin check, stream requests, cursors.

A *cursor* is the positions of a request's topics, comma-separated in the order of its
``topic`` parameters: ``"k3Xq9a:4,Zt8e1b:0"``. SSE sends it as each event's ``id``
(so the browser's ``Last-Event-ID`` resumes every topic at once) and long-poll returns
it as ``since`` for the next poll. Positions contain no comma, so it needs no escaping.

An SSE or long-poll request is a list of subscribe requests, one per ``topic``
parameter, checked by the client's session before anything is sent
(:func:`stream_request`): the same rules, limits and errors as on a WebSocket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, JsonResponse

from tidings.auth import origin_allowed
from tidings.core.messages import Position
from tidings.core.protocol import Error, Joined, Output, Subscribe, loads, meta_error
from tidings.core.topics import topic_error
from tidings.grip.subscriber import ProxySubscriber
from tidings.server.node import Node, get_node
from tidings.server.subscriber import Mailbox, Subscriber

STATUS = {
    "bad_request": 400,
    "invalid_topic": 400,
    "rejected": 400,
    "not_subscribed": 400,
    "too_many_subscriptions": 400,
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
    return JsonResponse(
        {"ok": False, "error": detail}, status=STATUS.get(code, 400), headers=headers
    )


def error_response(failed: Error) -> JsonResponse:
    """A session's :class:`~tidings.core.protocol.Error` as the HTTP answer."""
    return error(failed.code, failed.message, failed.topic)


def first_error(items: list[Output]) -> Error | None:
    return next((item for item in items if isinstance(item, Error)), None)


def origin_refused(request: HttpRequest, node: Node) -> JsonResponse | None:
    """403 when the request comes from a page of a foreign site.

    Unlike WebSockets, a missing Origin is let through: browsers send none on their own
    same-origin GETs. A cross-site ``fetch``/``EventSource`` always carries its Origin.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(origin, request.get_host(), node.settings.allowed_origins):
        return None
    return error("forbidden", "Requests from this origin are not allowed.")


@dataclass
class StreamRequest:
    """A valid SSE or long-poll request: its topics, one subscribe request each, and the
    subscriber that will serve it (its session already checked them)."""

    topics: list[str]
    requests: list[Subscribe]
    subscriber: Subscriber
    by_proxy: bool  # Pushpin holds it (GRIP): the subscriber is a ProxySubscriber

    @property
    def presence(self) -> dict[str, Any]:
        return {r.topic: r.presence for r in self.requests if r.presence is not None}


async def stream_request(
    request: HttpRequest, node: Node, resume: str | None, *, proxied: bool = False
) -> StreamRequest | JsonResponse:
    """Check a GET on the SSE or long-poll endpoint; ``resume`` is its cursor, if any.

    ``proxied``: it came through the GRIP proxy, which then holds it, unless it asks
    for presence (that needs a connection held here).
    """
    if request.method != "GET":
        return error("not_allowed", "Use GET.", Allow="GET")
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
    presence = parse_presence(request.GET.get("presence"), topics, node)
    if isinstance(presence, Error):
        return error_response(presence)
    try:
        since = parse_cursor(resume, topics) if resume else {}
    except ValueError as e:
        return error("bad_request", f"Cannot resume from {str(resume)[:80]!r}: {e}")
    requests = [Subscribe(None, t, since.get(t), presence.get(t)) for t in topics]
    user = await request.auser()
    by_proxy = proxied and not presence
    subscriber = ProxySubscriber(node, user) if by_proxy else Subscriber(node, user, Mailbox())
    for r in requests:
        if not await subscriber.run(subscriber.session.check(r)):
            failed = first_error(subscriber.take())
            assert failed is not None
            return error_response(failed)
    return StreamRequest(topics, requests, subscriber, by_proxy)


def parse_presence(raw: str | None, topics: list[str], node: Node) -> dict[str, Any] | Error:
    """The ``presence`` parameter: a JSON object, topic -> ``true`` (watch) or a meta
    (track this client with it). Every topic named must be in the request."""
    if raw is None:
        return {}
    wanted = loads(raw, node.limits, "'presence'")
    if isinstance(wanted, Error):
        return wanted
    if not isinstance(wanted, dict):
        return Error(
            None, "bad_request", "'presence' must be a JSON object: topic -> true or a meta."
        )
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


def opened(items: list[Output]) -> dict[str, Joined]:
    """The :class:`Joined` of each topic among a join's outputs."""
    return {item.topic: item for item in items if isinstance(item, Joined)}


def topic_info(joined: Joined) -> dict[str, Any]:
    """What a stream's start says of a topic: its position, and ``recovered`` on resume."""
    info: dict[str, Any] = {"position": str(joined.position)}
    if joined.recovered is not None:
        info["recovered"] = joined.recovered
    return info


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
