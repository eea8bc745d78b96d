"""publish() and apublish(): send a message to a topic from any Django code."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from tidings.conf import get_settings
from tidings.messages import Position, encode_data
from tidings.node import get_node
from tidings.topics import event_error, topic_error


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
    using: str | None = None,
) -> Position | None:
    """Publish ``data`` (anything JSON-serializable) to ``topic``; return its position.

    Safe from sync views, signal handlers, threads and management commands. Inside
    ``transaction.atomic()`` (on database ``using``) the message is sent only once the
    transaction commits, and never if it rolls back; then ``None`` is returned, as the
    position is not known yet. ``on_commit=False`` sends at once, transaction or not.

    Raises :class:`ValueError` for an invalid topic or event, :class:`TypeError` for
    data JSON cannot encode, and :class:`~tidings.brokers.base.BrokerError` when the
    broker cannot take the message. From async code, use :func:`apublish`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("tidings.publish() was called from async code: use tidings.apublish().")
    data_json = _encode(topic, data, event)
    alias = using or DEFAULT_DB_ALIAS
    if on_commit and connections[alias].in_atomic_block:
        transaction.on_commit(lambda: get_node().publish(topic, event, data_json), using=alias)
        return None
    return get_node().publish(topic, event, data_json)


async def apublish(topic: str, data: Any, event: str = "message") -> Position:
    """Async twin of :func:`publish`.

    Django runs no transaction in async code, so there is nothing to wait for: the
    message is sent at once. To publish after a commit, call :func:`publish` inside the
    ``transaction.atomic()`` block (e.g. in a function run with ``sync_to_async``).
    """
    return await get_node().apublish(topic, event, _encode(topic, data, event))
