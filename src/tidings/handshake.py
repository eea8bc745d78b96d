"""Who is connecting, and from which site: the checks of a connection's handshake.

This is authentication (who); what they may do is authorization (:mod:`tidings.registry`).

The user comes from a token (:mod:`tidings.tokens`) when the client sends one, else from
Django's session cookie, exactly as ``AuthenticationMiddleware`` would resolve it, so
``request.user`` in a view and the user a rule sees are the same.
The ``Origin`` check stops cross-site WebSocket hijacking: a page on another site
cannot open a socket that rides on the visitor's cookies. The ``Host`` check stops DNS
rebinding: a page on ``evil.example`` whose name is made to point at this server is
same-origin with itself (Origin and Host both ``evil.example``), so only
``ALLOWED_HOSTS`` can tell it from the real site. It is Django's own
``HttpRequest.get_host()``, so ``DEBUG``'s defaults and ``USE_X_FORWARDED_HOST`` apply
exactly as in views.

Channels' ``OriginValidator`` is ASGI middleware for WebSockets only; the same check
is needed for the HTTP transports, so this module holds one small function both use,
built on Django's own ``validate_host``.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host

from tidings.tokens import Grant, bearer, from_subprotocols, verify

Headers = list[tuple[bytes, bytes]]


def header(headers: Headers, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


_META = {
    b"host": "HTTP_HOST",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    b"x-forwarded-port": "HTTP_X_FORWARDED_PORT",
}


class _HostRequest(HttpRequest):
    """An ``HttpRequest`` with only what ``get_host()`` reads: ``META`` (and the
    settings). ``HttpRequest()`` builds five query dicts first, ~8 µs of every
    WebSocket handshake; the check itself is Django's, unchanged."""

    def __init__(self) -> None:  # (HttpRequest.__init__ is not called: nothing else is read)
        self.META = {}


def allowed_host(scope: Any) -> str | None:
    """The host a request names, as ``HttpRequest.get_host()`` returns it; ``None`` when
    ``ALLOWED_HOSTS`` refuses it (Django would raise ``DisallowedHost``)."""
    request = _HostRequest()
    for key, value in scope.get("headers", []):
        name = _META.get(key)
        if name is not None and name not in request.META:
            request.META[name] = value.decode("latin-1")
    server = scope.get("server")
    if server:
        request.META["SERVER_NAME"], request.META["SERVER_PORT"] = server[0], str(server[1])
    try:
        return request.get_host()
    except DisallowedHost:
        return None


def origin_allowed(origin: str | None, host: str | None, allowed_origins: tuple[str, ...]) -> bool:
    """May a page served from ``origin`` talk to us (reached as ``host``, which
    :func:`allowed_host` has checked)?

    Refused: no Origin, ``null``, a non-http(s) scheme. Allowed: an exact entry of
    ``TIDINGS["ALLOWED_ORIGINS"]`` (or ``"*"``); the request's own host (same origin);
    a host matched by ``ALLOWED_HOSTS``, except a bare ``"*"`` there, which would let
    every site in.
    """
    if not origin or origin == "null":
        return False
    if "*" in allowed_origins or origin.rstrip("/") in allowed_origins:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if host is not None and parts.netloc.lower() == host.lower():
        return True
    allowed_hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, allowed_hosts)


async def user_from_headers(headers: Headers) -> Any:
    """The Django user of the session cookie in ``headers`` (``AnonymousUser`` if none)."""
    if "django.contrib.auth" not in settings.INSTALLED_APPS:
        return None
    from django.contrib.auth import aget_user
    from django.contrib.auth.models import AnonymousUser

    cookie = header(headers, b"cookie")
    if not cookie:
        return AnonymousUser()
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie)
    except Exception:
        return AnonymousUser()
    morsel = jar.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    request = SimpleNamespace(session=engine.SessionStore(morsel.value))
    return await aget_user(request)  # type: ignore[arg-type]


async def websocket_caller(scope: Any) -> tuple[Any, Grant | None]:
    """Who opens this WebSocket: the user of the token among its subprotocols
    (:mod:`tidings.tokens`), else of its session cookie. :class:`InvalidToken` for a
    token that does not pass."""
    value = from_subprotocols(list(scope.get("subprotocols") or []))
    if value is not None:
        return await verify(value)
    return await user_from_headers(scope.get("headers", [])), None


async def request_caller(request: HttpRequest) -> tuple[Any, Grant | None]:
    """Who makes this HTTP request: the user of its ``Authorization: Bearer`` or
    ``?token=`` token, else of its session cookie (``request.auser()``)."""
    value = bearer(request.headers.get("Authorization")) or request.GET.get("token")
    if value:
        return await verify(value)
    return await request.auser(), None
