"""What the HTTP transports share: JSON errors, the origin check, stream requests, cursors.

An SSE or long-poll request is a list of subscribe requests, one per ``topic``
parameter (:func:`tidings.core.streams.parse_stream`), checked by the client's session
before anything is sent (:func:`stream_request`): the same rules, limits and errors as
on a WebSocket. Its *cursor* (:func:`tidings.core.streams.parse_cursor`) is SSE's event
``id`` (so the browser's ``Last-Event-ID`` resumes every topic at once) and the
``since`` a long-poll answers for the next poll.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import math
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.cache import patch_vary_headers

from tidings import metrics
from tidings.core.protocol import CLOSE_TOO_MANY, Error, Joined, Output, Subscribe
from tidings.core.streams import parse_stream
from tidings.grip.subscriber import ProxySubscriber
from tidings.handshake import origin_allowed, request_caller
from tidings.server.node import Node, get_node
from tidings.server.outlets import Mailbox
from tidings.server.subscriber import Subscriber
from tidings.tokens import InvalidToken

STATUS = {
    "bad_request": 400,
    "invalid_topic": 400,
    "rejected": 400,
    "not_subscribed": 400,
    "too_many_subscriptions": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_allowed": 405,
    "not_found": 404,
    "too_large": 413,
    "rate_limited": 429,
    "too_many_connections": 429,
    "internal_error": 500,
    "unavailable": 503,
}


View = Callable[[HttpRequest], Coroutine[Any, Any, HttpResponseBase]]
RETRY_AFTER = "5"  # seconds: how soon to try again when the broker is unavailable


def error(code: str, message: str, topic: str | None = None, **headers: str) -> JsonResponse:
    """``{"ok": false, "error": {"code", "message", "topic"?}}`` with the fitting status.

    ``topic`` names the topic refused, so a client of several topics knows which. Every
    HTTP endpoint answers its errors here: a 503 (``unavailable``: the broker is down)
    says ``Retry-After``.
    """
    detail = {"code": code, "message": message}
    if topic is not None:
        detail["topic"] = topic
    status = STATUS.get(code, 400)
    if status == 503:
        headers.setdefault("Retry-After", RETRY_AFTER)
    return JsonResponse({"ok": False, "error": detail}, status=status, headers=headers)


def refusal_response(code: int, reason: str) -> JsonResponse:
    """A connection the node refused at once (:meth:`Node.refusal`), as HTTP says it."""
    if code == CLOSE_TOO_MANY:
        return error("too_many_connections", reason, **{"Retry-After": "5"})
    hint = re.search(r"in ([0-9.]+) s", reason)  # 1013's "try again in 2.4 s"
    wait = str(math.ceil(float(hint.group(1)))) if hint else "1"
    return error("unavailable", f"{reason}.", **{"Retry-After": wait})


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


CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-CSRFToken"


def cors(view: View) -> View:
    """CORS for an HTTP endpoint: pages of ``TIDINGS["ALLOWED_ORIGINS"]`` (and of
    ``ALLOWED_HOSTS``, as for WebSockets) may read its answers, with a token or their
    cookies, and send ``Authorization`` and ``Last-Event-ID``; a preflight is answered
    here. Other origins get no CORS headers (and the view's own 403)."""

    @functools.wraps(view)
    async def with_cors(request: HttpRequest) -> HttpResponseBase:
        origin = request.headers.get("Origin")
        node = get_node()
        allowed = origin is not None and origin_allowed(
            origin, request.get_host(), node.settings.allowed_origins
        )
        if request.method == "OPTIONS":
            if not allowed:
                return error("forbidden", "Requests from this origin are not allowed.")
            response: HttpResponseBase = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = CORS_HEADERS
            response["Access-Control-Max-Age"] = "600"
        else:
            response = await view(request)
        if allowed:
            assert origin is not None
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Credentials"] = "true"
        patch_vary_headers(response, ["Origin"])
        return response

    return with_cors


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
    request: HttpRequest, node: Node, transport: str, resume: str | None, *, proxied: bool = False
) -> StreamRequest | JsonResponse:
    """Check a GET on the ``transport`` ("sse" or "longpoll") endpoint; ``resume`` is its
    cursor, if any.

    ``proxied``: it came through the GRIP proxy, which then holds it, unless it asks
    for presence (that needs a connection held here).
    """
    if request.method != "GET":
        return error("not_allowed", "Use GET.", Allow="GET")
    refused = origin_refused(request, node)
    if refused is not None:
        return refused
    requests = parse_stream(
        request.GET.getlist("topic"), resume, request.GET.get("presence"), node.limits
    )
    if isinstance(requests, Error):
        return error_response(requests)
    presence = any(r.presence is not None for r in requests)
    try:
        user, grant = await request_caller(request)
    except InvalidToken as e:
        return error("unauthorized", f"{e}: fetch a new token.")
    by_proxy = proxied and not presence
    if by_proxy:
        subscriber: Subscriber = ProxySubscriber(node, user, transport=f"grip {transport}")
    else:
        subscriber = Subscriber(node, user, Mailbox(), transport=transport, grant=grant)
        if subscriber.closing is not None:  # refused at once: Node.refusal
            return refusal_response(*subscriber.closing)
    for r in requests:
        if not await subscriber.run(subscriber.session.check(r)):
            failed = first_error(subscriber.take())
            assert failed is not None
            await subscriber.leave()
            return error_response(failed)
    return StreamRequest([r.topic for r in requests], requests, subscriber, by_proxy)


def opened(items: list[Output]) -> dict[str, Joined]:
    """The :class:`Joined` of each topic among a join's outputs."""
    return {item.topic: item for item in items if isinstance(item, Joined)}


async def health_view(request: HttpRequest) -> JsonResponse:
    """``GET /realtime/health``: 200 ``{"ok": true}`` while this process can deliver, else
    503. ``?ready=1`` (readiness) also says 503 while it drains for a shutdown.

    For load balancers and probes. Staff users also get the broker's details
    (reconnects, last error).
    """
    node = get_node()
    health = node.health(ready=request.GET.get("ready") == "1")
    body: dict[str, Any] = {"ok": health["ok"]}
    user = await request.auser()
    if getattr(user, "is_staff", False):
        body["broker"] = health["broker"]
    return JsonResponse(body, status=200 if health["ok"] else 503)


_FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


async def metrics_view(request: HttpRequest) -> HttpResponseBase:
    """``GET /realtime/metrics``: this process's Prometheus metrics (all processes',
    in multiprocess mode), :mod:`tidings.metrics`.

    Without ``TIDINGS["METRICS_TOKEN"]`` only loopback clients are answered, and not
    through a proxy (a request a proxy forwarded names its client in a header); with
    it, every scrape must send ``Authorization: Bearer <token>``, from anywhere.
    404 when ``TIDINGS["METRICS"]`` is off or prometheus_client is not installed.
    """
    node = get_node()
    if not node.settings.metrics or metrics.families() is None:
        return error("not_found", "Metrics are off: install tidings[metrics].")
    token = node.settings.metrics_token
    if token is not None:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return error("unauthorized", "Send Authorization: Bearer <METRICS_TOKEN>.")
    elif not _loopback(request):
        return error("forbidden", "Metrics are served to loopback clients only.")
    body, content_type = metrics.render(node)
    return HttpResponse(body, content_type=content_type)


def _loopback(request: HttpRequest) -> bool:
    if any(request.META.get(header) for header in _FORWARDED):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "").is_loopback
    except ValueError:
        return False
