"""GRIP instructions: channel names, the ``Grip-*`` headers, signed next links.

A topic's holds (in views) listen on the channel named like the topic; tidings' own
endpoints on ``tidings.t.<topic>``, so each side gets its own formats. Channel names
are topics with ``=`` written ``%3D`` (a Pushpin header parameter separator); no other
topic character needs mapping. ``prev-id`` values are quoted: positions hold ``:``.
Every proxied connection of a logged-in user also listens on ``tidings.u.<pk>``, where
:func:`tidings.disconnect` publishes its close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from django.core import signing
from django.http import HttpResponse

from tidings.core.messages import EMPTY, Position

PROTOCOL_PREFIX = "tidings.t."  # the endpoints' channels (tidings.* topics are reserved)
USER_PREFIX = "tidings.u."  # a logged-in user's connections: where a cut is published
_SALT = "tidings.grip"
_LINK_MAX_AGE = 24 * 3600  # a next link is good for a day (Pushpin keeps it to itself)


def gripcontrol() -> Any:
    """The gripcontrol module (the ``grip`` extra), imported when GRIP is used."""
    import gripcontrol  # type: ignore[import-untyped]

    return gripcontrol


def channel(topic: str) -> str:
    """The GRIP channel of a topic's holds."""
    return topic.replace("=", "%3D")


def protocol_channel(topic: str) -> str:
    """The GRIP channel of a topic on tidings' own endpoints."""
    return PROTOCOL_PREFIX + channel(topic)


def user_channel(key: str) -> str:
    """The GRIP channel every proxied connection of the user ``key`` (its pk as text)
    listens on, so :func:`tidings.disconnect` reaches the connections Pushpin holds.
    A primary key may hold any character (``,`` and ``;`` separate ``Grip-Channel``'s
    entries and parameters): it is percent-encoded."""
    return USER_PREFIX + quote(key, safe="")


def with_user(
    channels: Mapping[str, Position | None], key: str | None
) -> dict[str, Position | None]:
    """A hold's ``channels`` and, for a logged-in user ``key``, the user's channel (no
    ``prev-id``: a cut is not history)."""
    out = dict(channels)
    if key is not None:
        out[user_channel(key)] = None
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def channel_header(channels: dict[str, Position | None]) -> str:
    """``Grip-Channel``: each channel with its ``prev-id`` (quoted: positions hold ':')."""
    return ", ".join(
        name if prev is None else f"{name}; prev-id={_quote(str(prev))}"
        for name, prev in channels.items()
    )


def previous(position: Position) -> Position:
    """The position before ``position`` (its ``prev-id``). Before a topic's first
    message it stood at :data:`~tidings.core.messages.EMPTY` (its epoch is made by that
    first publish), which is what Pushpin holds for a topic seen empty."""
    if position.offset <= 1:
        return EMPTY
    return Position(position.epoch, position.offset - 1)


def _cstring(text: str) -> str:
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20:
            raise ValueError("not cstring encodable")
        else:
            out.append(c)
    return "".join(out)


def keep_alive_header(data: str, timeout: float) -> str:
    return f"{_cstring(data)}; format=cstring; timeout={max(1, math.ceil(timeout))}"


def sign(value: Any) -> str:
    return signing.dumps(value, salt=_SALT, compress=True)


def unsign(token: str) -> Any:
    """The signed value, or ``None`` when the token is bad or older than a day."""
    try:
        return signing.loads(token, salt=_SALT, max_age=_LINK_MAX_AGE)
    except signing.BadSignature:
        return None


def link_header(url: str) -> str:
    return f"<{url}>; rel=next"


def hold_stream(
    response: HttpResponse,
    channels: dict[str, Position | None],
    keep_alive: str | None,
    keep_alive_every: float,
    next_url: str,
) -> HttpResponse:
    """``response`` (the stream's start) with ``Grip-Hold: stream`` on ``channels``."""
    response["Cache-Control"] = "no-cache"
    response["Grip-Hold"] = "stream"
    response["Grip-Channel"] = channel_header(channels)
    if keep_alive:
        response["Grip-Keep-Alive"] = keep_alive_header(keep_alive, keep_alive_every)
    response["Grip-Link"] = link_header(next_url)
    return response


def hold_response(
    response: HttpResponse, channels: dict[str, Position | None], timeout: float
) -> HttpResponse:
    """``response`` (sent when the hold times out) with ``Grip-Hold: response``."""
    if response.status_code == 304:  # a 304 may not carry the instructions: say it apart
        response.status_code = 200
        response.reason_phrase = "OK"
        response["Grip-Status"] = "304 Not Modified"
    response["Grip-Hold"] = "response"
    response["Grip-Channel"] = channel_header(channels)
    response["Grip-Timeout"] = str(max(1, math.ceil(timeout)))
    return response
