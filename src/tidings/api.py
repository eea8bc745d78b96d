"""publish() and apublish(): send a message to a topic from any Django code;
disconnect() and adisconnect(): end a user's connections in every process."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import HttpResponseBase

from tidings.conf import get_settings
from tidings.core.messages import Position
from tidings.core.protocol import CLOSE_LOGGED_OUT
from tidings.core.topics import event_error, topic_error
from tidings.encoding import encode_data
from tidings.formats import encode_formats
from tidings.server.clients import user_key
from tidings.server.node import get_node


def _encode(topic: str, data: Any, event: str) -> str:
    problem = topic_error(topic, get_settings().topic_max_length) or event_error(event)
    if problem is not None:
        raise ValueError(problem)
    return encode_data(data)


def publish(
    topic: str,
    data: Any,
    event: str = "message",
    *,
    on_commit: bool = True,
    durable: bool = False,
    using: str | None = None,
    http_response: HttpResponseBase | None = None,
    http_stream: str | None = None,
    ws_message: str | None = None,
) -> Position | None:
    """Publish ``data`` (anything JSON-serializable) to ``topic``; return its position.

    Safe from sync views, signal handlers, threads and management commands. Inside
    ``transaction.atomic()`` (on database ``using``) the message is sent only once the
    transaction commits, and never if it rolls back; then ``None`` is returned, as the
    position is not known yet. ``on_commit=False`` sends at once, transaction or not.

    ``durable=True`` writes the message to the outbox table of database ``using``, in
    its transaction (or on its own, outside one), and a relay publishes it once it has
    committed (:mod:`tidings.outbox`): it survives the process dying right after the
    commit. It returns ``None``; it cannot be combined with ``on_commit=False``.

    ``http_response``, ``http_stream`` and ``ws_message`` say exactly what requests
    held by views (:mod:`tidings.holds`) get for this item; see :mod:`tidings.formats`.

    Raises :class:`ValueError` for an invalid topic or event, :class:`TypeError` for
    data JSON cannot encode, and :class:`~tidings.exceptions.BrokerError` when the
    broker cannot take the message. From async code, use :func:`apublish`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("tidings.publish() was called from async code: use tidings.apublish().")
    data_json = _encode(topic, data, event)
    formats_json = encode_formats(http_response, http_stream, ws_message)
    alias = using or DEFAULT_DB_ALIAS
    if durable:
        if not on_commit:
            raise ValueError("A durable publish is sent after its commit: drop on_commit=False.")
        from tidings import outbox

        outbox.write(get_node(), topic, event, data_json, formats_json, alias)
        return None
    if on_commit and connections[alias].in_atomic_block:
        transaction.on_commit(
            lambda: get_node().publish(topic, event, data_json, formats_json), using=alias
        )
        return None
    return get_node().publish(topic, event, data_json, formats_json)


async def apublish(
    topic: str,
    data: Any,
    event: str = "message",
    *,
    http_response: HttpResponseBase | None = None,
    http_stream: str | None = None,
    ws_message: str | None = None,
) -> Position:
    """Async twin of :func:`publish`.

    Django runs no transaction in async code, so there is nothing to wait for: the
    message is sent at once. To publish after a commit, call :func:`publish` inside the
    ``transaction.atomic()`` block (e.g. in a function run with ``sync_to_async``).
    """
    formats_json = encode_formats(http_response, http_stream, ws_message)
    return await get_node().apublish(topic, event, _encode(topic, data, event), formats_json)


async def aposition(topic: str) -> Position:
    """``topic``'s current position: that of its last message (offset 0 if none yet).

    Use it as an ETag or a cursor: a subscription with ``since`` set to it misses nothing
    that comes after.
    """
    problem = topic_error(topic, get_settings().topic_max_length)
    if problem is not None:
        raise ValueError(problem)
    node = get_node()
    return (await node.broker.history(topic, None)).position


MAX_REASON_BYTES = 123  # what a WebSocket close frame can carry


def _cut(user: Any, reason: str) -> str | None:
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise ValueError(f"A disconnect reason may have at most {MAX_REASON_BYTES} bytes.")
    if user is not None and not hasattr(user, "pk"):  # a primary key
        return str(user)
    return user_key(user)


def disconnect(
    user: Any, reason: str = "disconnected", *, on_commit: bool = True, using: str | None = None
) -> None:
    """Close every connection of ``user`` (a user, or its primary key), in every process.

    Each connection ends with close code 4401 and ``reason``: a WebSocket's close frame,
    an SSE stream's ``tidings.close`` event, a held poll answered at once; the client
    comes back as whoever its session cookie now says; connections Pushpin holds are
    closed the same way (docs/deploy.md). tidings calls this itself when a
    user logs out, changes their password, is deactivated or deleted (docs/guide.md);
    call it when your own state ends a login (a ban, a revoked token). Safe from any
    thread and from async code. Inside ``transaction.atomic()`` it waits for the commit,
    so a client that reconnects at once already sees the change (``on_commit=False``:
    at once). Nothing happens for an anonymous or unsaved user.
    """
    key = _cut(user, reason)
    if key is None:
        return
    alias = using or DEFAULT_DB_ALIAS
    if on_commit and connections[alias].in_atomic_block:
        transaction.on_commit(
            lambda: get_node().disconnect(key, CLOSE_LOGGED_OUT, reason), using=alias
        )
    else:
        get_node().disconnect(key, CLOSE_LOGGED_OUT, reason)


async def adisconnect(user: Any, reason: str = "disconnected") -> None:
    """Async twin of :func:`disconnect` (at once: async code runs no transaction)."""
    key = _cut(user, reason)
    if key is not None:
        await get_node().adisconnect(key, CLOSE_LOGGED_OUT, reason)
