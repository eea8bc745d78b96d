"""ASGI type aliases shared by the transports (as in starlette/types.py).

An ASGI message is called an ``Event`` here: "message" means a published message
(:class:`tidings.core.messages.Message`) everywhere else in tidings.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Event: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Event]]
Send: TypeAlias = Callable[[Event], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

# The scope extension of tidings.serve's WebSocket protocol: a synchronous text send,
# ``(UTF-8 bytes) -> bool`` (written now, or ``False``: use ``send()``).
SEND_TEXT = "tidings.send_text"
