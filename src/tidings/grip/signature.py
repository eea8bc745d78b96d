"""Is this request from the proxy? ``Grip-Sig``, and the headers only the proxy may set.

A request counts as the proxy's only when its ``Grip-Sig`` verifies against a
configured proxy's key (HS256 pinned, ``exp`` required, ``iss`` checked where set).
Proxy-only headers (``Grip-Last``, ``Meta-*``, ``Connection-Id``) mean something only
then: anyone else could send them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from django.http import HttpRequest

from tidings.conf import GripProxy, Settings, get_settings
from tidings.core.messages import Position

WS_EVENTS = "application/websocket-events"
_LEEWAY = 5  # seconds of clock skew allowed on Grip-Sig's exp


def verify_sig(token: str, proxies: Sequence[GripProxy]) -> bool:
    """Does ``token`` (a ``Grip-Sig``) verify against one of ``proxies``' keys?

    HS256 only (the algorithm is pinned: a token naming another one fails), ``exp``
    required and checked, ``iss`` checked where the proxy's ``ISS`` is set.
    """
    import jwt

    for proxy in proxies:
        try:
            jwt.decode(
                token,
                proxy.key,
                algorithms=["HS256"],
                options={"require": ["exp"], "verify_iss": proxy.iss is not None},
                issuer=proxy.iss,
                leeway=_LEEWAY,
            )
        except jwt.PyJWTError:
            continue
        return True
    return False


def proxied(request: HttpRequest, settings: Settings | None = None) -> bool:
    """Did ``request`` come through a configured GRIP proxy (a valid ``Grip-Sig``)?

    ``False`` when GRIP is off. The answer is remembered on the request.
    """
    cached = getattr(request, "_tidings_grip", None)
    if cached is not None:
        return bool(cached)
    settings = settings or get_settings()
    token = request.headers.get("Grip-Sig")
    ok = bool(settings.grip) and bool(token) and verify_sig(str(token), settings.grip)
    request._tidings_grip = ok  # type: ignore[attr-defined]
    return ok


def grip_last(request: HttpRequest) -> dict[str, str]:
    """``Grip-Last`` (channel -> last id), only from a verified proxy request."""
    if not proxied(request):
        return {}
    out: dict[str, str] = {}
    for part in request.headers.get("Grip-Last", "").split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "last-id" and name:
                out[name.strip()] = value.strip().strip('"')
    return out


def last_positions(request: HttpRequest, names: dict[str, str]) -> dict[str, Position]:
    """Positions by topic from ``Grip-Last``; ``names`` maps channel -> topic."""
    out: dict[str, Position] = {}
    for name, last in grip_last(request).items():
        topic = names.get(name)
        if topic is not None:
            with contextlib.suppress(ValueError):
                out[topic] = Position.parse(last)
    return out


def is_ws_over_http(request: HttpRequest) -> bool:
    """A WebSocket-over-HTTP request from a verified proxy."""
    content_type = request.content_type if hasattr(request, "content_type") else ""
    return request.method == "POST" and content_type == WS_EVENTS and proxied(request)


def meta(request: HttpRequest, name: str) -> str | None:
    """A ``Meta-<name>`` header (a WebSocket-over-HTTP connection's), only from the proxy."""
    if not proxied(request):
        return None
    return request.headers.get(f"Meta-{name}")
