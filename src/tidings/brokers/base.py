"""The broker contract. Every broker passes the kit in :mod:`tidings.testing.broker_contract`
(``tests/test_broker_contract.py`` runs it against ``memory://`` and ``redis://``).

A broker does four things and makes no policy:

1. **Publish** a message to a topic and return its :class:`~tidings.core.messages.Position`.
   Appending to the topic's history and handing the message to subscribed processes
   is one atomic step: every process sees a topic's messages in offset order, and a
   message is in history before (or at the same moment as) it reaches any process.
   Offsets are consecutive per topic, even when several processes publish at once.
2. **Deliver** the messages of topics this process is subscribed to, by calling the
   ``deliver`` callback given to :meth:`Broker.start`, on the event loop that called
   ``start``, in offset order per topic. Fan-out to connections is the hub's job, not
   the broker's.
3. **History**: the messages after a position, or a plain "cannot" — never a partial
   replay passed off as complete (:class:`HistoryResult`). A topic the broker keeps
   nothing of (never published, or idle and freed) stands at ``EMPTY``
   (:mod:`tidings.core.messages`), and reading it stores nothing: anyone may ask
   about any topic, so a read must not allocate what outlives it. ``EMPTY`` resumes
   like offset 0 of whichever epoch the topic's first later publish makes. A broker
   frees an idle topic (no subscriber in this process, its history expired, untouched
   for its ``meta_ttl``).
4. **Presence**: a per-topic map of connection id -> member info, kept by the broker's
   :attr:`Broker.presence` store, a contract of its own (:class:`PresenceStore`).

``publish`` is synchronous and may be called from any thread (Django views, management
commands, workers); ``apublish`` is its twin for async code. Both raise
:class:`BrokerError` when the message could not be published: a publish either
returns a position or raises.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidings.core.messages import HistoryPolicy, Message, Position

Deliver = Callable[[Message], None]


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """The answer to "what came after ``since``?".

    ``recovered`` is true when ``messages`` is exactly every message after ``since``
    up to ``position`` (possibly none). It is false when that cannot be promised: the
    epoch changed, ``since`` is ahead of the topic, or history no longer reaches back
    to it; ``messages`` is then empty. ``position`` is the topic's position now.
    """

    position: Position
    recovered: bool
    messages: tuple[Message, ...] = ()


class PresenceStore(abc.ABC):
    """A per-topic map of connection id -> member info, which every process of the
    broker reads whole.

    The store keeps the entries of its own live process (while its broker is started)
    until they are removed; the entries of a process that died expire by themselves,
    within the store's presence TTL (the Redis store's ``presence_ttl``). A store that
    lives and dies with its one process, as the memory broker's does, needs no TTL.
    Only the process that added an entry removes it.
    """

    @abc.abstractmethod
    async def add(self, topic: str, conn_id: str, info: dict[str, Any]) -> None:
        """Add ``conn_id`` to ``topic``'s entries, or replace its info; it then lives as
        long as this process does, unless removed."""

    @abc.abstractmethod
    async def remove(self, topic: str, conn_id: str) -> None:
        """Remove ``conn_id`` from ``topic``'s entries (nothing to do if it is not there)."""

    @abc.abstractmethod
    async def entries(self, topic: str) -> dict[str, dict[str, Any]]:
        """``topic``'s live entries, from every process: connection id -> member info."""


class Broker(abc.ABC):
    """Moves messages between processes; keeps history and presence. See module doc.

    ``presence`` is the broker's :class:`PresenceStore`; a broker sets it in ``__init__``.
    """

    url: str
    presence: PresenceStore

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Begin delivering messages of subscribed topics to ``deliver`` on this loop."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering and release connections; ``start`` may be called again."""

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """This process wants ``topic``'s messages (called on its first local subscriber)."""

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """This process no longer wants ``topic``'s messages (after its last local subscriber)."""

    @abc.abstractmethod
    def publish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        """Append to history and deliver, atomically; return the new position. Any thread.

        ``formats_json`` (optional) travels with the message unchanged: per-transport
        representations (:mod:`tidings.formats`).
        """

    @abc.abstractmethod
    async def apublish(
        self,
        topic: str,
        event: str,
        data_json: str,
        history: HistoryPolicy,
        formats_json: str | None = None,
    ) -> Position:
        """Async twin of :meth:`publish`."""

    @abc.abstractmethod
    async def history(self, topic: str, since: Position | None) -> HistoryResult:
        """Messages after ``since`` (``None``: just the current position). A topic the
        broker keeps nothing of is at :data:`~tidings.core.messages.EMPTY`, and stays unstored."""

    def health(self) -> dict[str, Any]:
        """Whether this broker can move messages now (``connected``), and what else it
        can tell (reconnects, last error...). The memory broker is always connected."""
        return {"connected": True}
