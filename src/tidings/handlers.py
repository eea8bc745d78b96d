"""Topic handlers: server code that receives what clients publish (Phoenix's ``handle_in``).

    @tidings.handler("rooms.*")
    def on_room_message(msg: tidings.ClientMessage):
        text = msg.data.get("message", "")
        if not text:
            raise tidings.Reject("Say something.")
        stored = Message.objects.create(room=..., message=text)
        return stored.as_dict()          # broadcast to the topic; return None to broadcast nothing

A plain function runs in Django's sync thread (the ORM just works); an ``async def``
runs on the event loop. Raising :class:`Reject` answers the client with a ``rejected``
error carrying your message; any other exception answers ``internal_error`` and is logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from tidings.core.topics import Pattern
from tidings.exceptions import Reject

__all__ = ["ClientMessage", "Reject", "handler"]


@dataclass(frozen=True)
class ClientMessage:
    """A client's publish, as a handler sees it."""

    user: Any
    topic: str
    event: str
    data: Any
    connection_id: str


Handler: TypeAlias = Callable[[ClientMessage], "Any | Awaitable[Any]"]

_handlers: list[tuple[Pattern, Handler]] = []
_found: dict[str, Handler | None] = {}  # find_handler's answers, per topic


def handler(pattern: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for client publishes on topics matching ``pattern``."""

    def register(fn: Handler) -> Handler:
        _handlers.append((Pattern(pattern), fn))
        _found.clear()
        return fn

    return register


def find_handler(topic: str) -> Handler | None:
    """The first handler registered for a pattern matching ``topic``."""
    try:
        return _found[topic]
    except KeyError:
        pass
    found = next((fn for pattern, fn in _handlers if pattern.match(topic)), None)
    if len(_found) >= 20_000:
        _found.clear()
    _found[topic] = found
    return found


def clear() -> None:
    """Forget every registered handler (for tests)."""
    _handlers.clear()
    _found.clear()
