"""Tokens: who a client is without a session cookie (another origin, a mobile app, a
service), and optionally which topics it may subscribe to without asking the rules.

    token = tidings.token(request.user, ttl=600)                     # in your view
    token = tidings.token(request.user, topics=["rooms.lobby"])      # with a grant

A token is signed with ``SECRET_KEY`` by :mod:`django.core.signing` (no new
dependency; a salt of its own, so no other signed value of the site passes for one).
It carries the user's primary key, its expiry, a piece of the user's session hash —
so a password change ends every token of the user, as it ends their sessions — and the
granted topic patterns. Every transport accepts it: a WebSocket as the subprotocol
``tidings.token.<token>`` (offered next to ``tidings``, which the server picks), SSE,
long-poll and publishing as ``Authorization: Bearer <token>`` or ``?token=`` (an
``EventSource`` can set no header). A connection made with a token is closed with
4401 ("token expired") when the token expires: clients fetch a new one and reconnect.

The granted patterns (``topics``) are a subscribe grant: a subscription to a topic
they match is allowed with no rule checked, so no database query is made for it
(Centrifugo's subscription tokens). Nothing else is granted: publishing, presence and
handlers go through the rules as always.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ObjectDoesNotExist

from tidings.conf import get_settings
from tidings.core.topics import Pattern

SALT = "tidings.token"
PROTOCOL = "tidings"  # the WebSocket subprotocol the server picks
PREFIX = "tidings.token."  # a WebSocket subprotocol that carries a token


def _signer() -> signing.TimestampSigner:
    # "." rather than ":" between the parts: a token is then a valid subprotocol name
    return signing.TimestampSigner(salt=SALT, sep=".")


def _session_hash(user: Any) -> str:
    get_hash = getattr(user, "get_session_auth_hash", None)
    return get_hash()[:12] if callable(get_hash) else ""


def token(user: Any, ttl: float | None = None, *, topics: Iterable[str] = ()) -> str:
    """A token that identifies ``user`` to every transport for ``ttl`` seconds
    (``TIDINGS["TOKEN_TTL"]`` by default, an hour); ``topics``: patterns (``"rooms.*"``)
    it may subscribe to with no rule checked."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise ValueError("tidings.token() needs a saved, authenticated user")
    seconds = get_settings().token_ttl if ttl is None else float(ttl)
    if not seconds > 0:
        raise ValueError("a token's ttl must be more than 0 seconds")
    patterns = [Pattern(t).text for t in topics]  # ValueError for a bad one
    payload = {"u": str(user.pk), "h": _session_hash(user), "e": int(time.time() + seconds)}
    if patterns:
        payload["t"] = patterns
    return _signer().sign_object(payload)


@dataclass(frozen=True)
class Grant:
    """What a valid token says: until when, and the topics it grants."""

    expires: float
    topics: tuple[Pattern, ...] = ()

    def allows(self, topic: str) -> bool:
        """May ``topic`` be subscribed to with no rule checked?"""
        return any(p.match(topic) for p in self.topics)


class InvalidToken(Exception):
    """A token that is forged, expired, or whose user is gone, inactive, or changed
    password since."""


async def verify(value: str) -> tuple[Any, Grant]:
    """The user ``value`` names and its grant; :class:`InvalidToken` otherwise."""
    try:
        payload = _signer().unsign_object(value)
        key, session_hash, expires = str(payload["u"]), str(payload["h"]), float(payload["e"])
        topics = tuple(Pattern(str(t)) for t in payload.get("t", ()))
    except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise InvalidToken("invalid token") from None
    if expires <= time.time():
        raise InvalidToken("token expired")
    model = get_user_model()
    try:
        user = await model._default_manager.aget(pk=key)
    except (ObjectDoesNotExist, ValueError):
        raise InvalidToken("invalid token") from None
    if not getattr(user, "is_active", True) or _session_hash(user) != session_hash:
        raise InvalidToken("invalid token")
    return user, Grant(expires, topics)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def from_subprotocols(offered: list[str]) -> str | None:
    """The token among a WebSocket's offered subprotocols, if any."""
    for name in offered:
        if name.startswith(PREFIX):
            return name[len(PREFIX) :]
    return None
