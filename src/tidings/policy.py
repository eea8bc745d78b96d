"""What a client may do, decided in one place for every transport.

Transports parse requests and move bytes; they ask this module whether a user may
subscribe to or publish on a topic, and hand client publishes to it, so the same
private topic denies the same user over WebSocket, SSE and long-poll alike.
"""

from __future__ import annotations

import inspect
from typing import Any

from asgiref.sync import sync_to_async

from tidings import handlers, rules
from tidings.core.messages import Position
from tidings.encoding import encode_data
from tidings.handlers import ClientMessage
from tidings.server.node import Node


class Forbidden(Exception):
    """The user may not do this on this topic."""


async def may(node: Node, user: Any, action: rules.Action, topic: str) -> bool:
    """Does a rule let ``user`` do ``action`` on ``topic``? (Handlers allow publishing.)"""
    check = rules.find_check(node.settings.rules, action, topic)
    if check is None:
        return action == "publish" and handlers.find_handler(topic) is not None
    if check is True or check is False:
        return check
    return await rules.evaluate(check, user, topic)


async def client_publish(
    node: Node, user: Any, topic: str, event: str, data: Any, connection_id: str
) -> Position | None:
    """Publish for a client: check the rules, run the topic's handler, broadcast.

    Returns the broadcast's position, or ``None`` when the handler chose to broadcast
    nothing. Raises :class:`Forbidden`, :class:`~tidings.handlers.Reject` (the handler
    refused), or whatever the handler raised.
    """
    if not await may(node, user, "publish", topic):
        raise Forbidden(f"You may not publish to {topic!r}.")
    handler = handlers.find_handler(topic)
    if handler is not None:
        message = ClientMessage(user, topic, event, data, connection_id)
        if inspect.iscoroutinefunction(handler):
            data = await handler(message)
        else:
            data = await sync_to_async(handler, thread_sensitive=True)(message)
        if data is None:
            return None
    return await node.apublish(topic, event, encode_data(data))
