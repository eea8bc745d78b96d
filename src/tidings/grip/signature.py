"""Is this request from the proxy? ``Grip-Sig``, and the headers only the proxy may set.

A request counts as the proxy's only when its ``Grip-Sig`` verifies against a
configured proxy's key (HS256 pinned, ``exp`` required, ``iss`` checked where set).
Proxy-only headers (``Grip-Last``, ``Meta-*``, ``Connection-Id``) mean something only
then: anyone else could send them.

A key anyone may know or guess (Pushpin's packaged ``changeme``, or shorter than 32
bytes) verifies nothing: the system check reports it (``tidings.E002``/``E003``), and
if the server is started anyway, requests signed with it are treated as unsigned (held
in-process, or refused where only the proxy may ask), and the reason is logged once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from django.http import HttpRequest

from tidings.conf import GripProxy, Settings, get_settings
from tidings.core.messages import Position

logger = logging.getLogger("tidings.grip")

WS_EVENTS = "application/websocket-events"
_LEEWAY = 5  # seconds of clock skew allowed on Grip-Sig's exp
DEFAULT_KEY = b"changeme"  # Pushpin's sig_key out of the box
MIN_KEY_BYTES = 32  # HS256's key should be at least as long as its hash
_told: set[str] = set()  # the proxies whose weak key was logged


def key_weakness(key: bytes) -> str | None:
    """Why a Grip-Sig signed with ``key`` proves nothing, or ``None`` for a usable key."""
    if key == DEFAULT_KEY:
        return "it is Pushpin's default key 'changeme'"
    if len(key) < MIN_KEY_BYTES:
        return f"it has {len(key)} bytes, fewer than {MIN_KEY_BYTES}"
    return None


def _trusted(proxy: GripProxy) -> bool:
    weakness = key_weakness(proxy.key)
    if weakness is None:
        return True
    if proxy.control_uri not in _told:
        _told.add(proxy.control_uri)
        logger.error(
            "GRIP: requests signed with the KEY of %s are not trusted as the proxy's: %s "
            "(tidings.E002/E003); they are served as unsigned requests",
            proxy.control_uri,
            weakness,
        )
    return False


def verify_sig(token: str, proxies: Sequence[GripProxy]) -> bool:
    """Does ``token`` (a ``Grip-Sig``) verify against one of ``proxies``' keys?

    HS256 only (the algorithm is pinned: a token naming another one fails), ``exp``
    required and checked, ``iss`` checked where the proxy's ``ISS`` is set. A weak key
    (:func:`key_weakness`) verifies nothing.
    """
    import jwt

    for proxy in proxies:
        if not _trusted(proxy):
            continue
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
