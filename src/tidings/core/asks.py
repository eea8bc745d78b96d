"""Asks: what a session's sequence needs its driver to do, and what it gets back.

A sequence (:mod:`tidings.core.session`) is a generator that yields these; the driver
(:class:`tidings.server.subscriber.Subscriber`) performs each one and sends the answer
back, or throws in the exception it raised. Each docstring says what the answer is.
Asks are made for every request, so they are plain slotted dataclasses (a frozen one
costs over twice as much to make); nothing changes them once made.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from tidings.core.messages import Message, Position


@dataclass(slots=True)
class Authorize:
    """May this client ``action`` ("subscribe" or "publish") on ``topic``? -> bool"""

    action: str
    topic: str


@dataclass(slots=True)
class Describe:
    """What is ``topic``? -> :class:`Facts`"""

    topic: str


@dataclass(slots=True)
class Listen:
    """Deliver ``topic``'s live messages to this client from now on. -> None"""

    topic: str


@dataclass(slots=True)
class Unlisten:
    topic: str


@dataclass(slots=True)
class ReadHistory:
    """``topic``'s messages after ``since`` -> a :class:`History`"""

    topic: str
    since: Position | None


@dataclass(slots=True)
class ReadSnapshot:
    """The rows of a model feed's ``topic`` this client may see -> list of rows (JSON)."""

    topic: str


@dataclass(slots=True)
class Watch:
    """Send this client ``topic``'s presence changes from now on -> the state (a frame)."""

    topic: str


@dataclass(slots=True)
class Unwatch:
    topic: str


@dataclass(slots=True)
class Track:
    """Show this client on ``topic`` with ``meta`` (again: a new meta) -> bool: shown
    (``False``: the app's ``member`` said this user is nobody there)."""

    topic: str
    meta: dict[str, Any]


@dataclass(slots=True)
class Untrack:
    topic: str


@dataclass(slots=True)
class QueryPresence:
    """``topic``'s presence now -> the reply's fields (``state`` or ``count``)."""

    topic: str


@dataclass(slots=True)
class PublishData:
    """Publish for this client (through the topic's handler) -> Position, or ``None``
    when the handler chose to broadcast nothing."""

    topic: str
    event: str
    data: Any


Ask: TypeAlias = (
    Authorize
    | Describe
    | Listen
    | Unlisten
    | ReadHistory
    | ReadSnapshot
    | Watch
    | Unwatch
    | Track
    | Untrack
    | QueryPresence
    | PublishData
)
Steps: TypeAlias = Generator[Ask, Any, None]


class History(Protocol):
    """The answer to :class:`ReadHistory` (a broker's ``HistoryResult``)."""

    @property
    def position(self) -> Position: ...
    @property
    def recovered(self) -> bool: ...
    @property
    def messages(self) -> tuple[Message, ...]: ...


@dataclass(slots=True)
class Facts:
    """The answer to :class:`Describe`: is presence enabled on the topic, is it a model
    feed's."""

    presence: bool
    feed: bool
