"""A connection's bounded outbound queue, with "coalesce by key" for state-like topics.

Items are appended as they are; an item that carries a coalescing key replaces the
older item with the same key that is still waiting, so a subscriber that lags behind
gets the latest state of each key instead of every step, and its queue stays as small
as the number of keys. The common path (no key) is a plain ``deque.append``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    """A keyed item's place in the queue; emptied (``item = None``) when superseded."""

    __slots__ = ("item", "key")

    def __init__(self, item: T, key: Hashable) -> None:
        self.item: T | None = item
        self.key = key


class Queue(Generic[T]):
    __slots__ = ("_allowance", "_items", "_keyed", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0  # live items (superseded ones are not counted)
        self._allowance = 0  # replayed items still queued: they do not count against limit
        self._items: deque[T | _Slot[T]] | None = None  # made on first use: idle costs nothing
        self._keyed: dict[Hashable, _Slot[T]] = {}

    def __bool__(self) -> bool:
        return self.size > 0

    def _deque(self) -> deque[T | _Slot[T]]:
        items = self._items
        if items is None:
            items = self._items = deque()
        return items

    def replay(self, items: list[T]) -> None:
        """Queue a replay from history, whatever its length: it is bounded by the history
        kept, and ``limit`` keeps applying to what arrives live on top of it."""
        self._deque().extend(items)
        self.size += len(items)
        self._allowance += len(items)

    def put(self, item: T, key: Hashable | None = None) -> bool:
        """Queue ``item``; ``False`` (and nothing queued) when the queue is full."""
        if key is None:
            if self.size >= self.limit + self._allowance:
                return False
            self._deque().append(item)
            self.size += 1
            return True
        old = self._keyed.get(key)
        if old is not None and old.item is not None:
            old.item = None  # superseded: the newer state replaces it
            self.size -= 1
        elif self.size >= self.limit + self._allowance:
            return False
        slot = self._keyed[key] = _Slot(item, key)
        self._deque().append(slot)
        self.size += 1
        return True

    def pop(self) -> T | None:
        """The oldest live item, or ``None`` when empty."""
        items = self._items
        while items:  # (None when nothing was ever queued)
            item = items.popleft()
            if isinstance(item, _Slot):
                if item.item is None:
                    continue
                value = item.item
                item.item = None
                if self._keyed.get(item.key) is item:
                    del self._keyed[item.key]
                self.size -= 1
                return value
            self.size -= 1
            if self._allowance:
                self._allowance -= 1
            return item
        self._items = None  # drained: give the memory back
        return None

    def pop_all(self) -> list[T]:
        out = []
        while (item := self.pop()) is not None:
            out.append(item)
        return out

    def clear(self) -> None:
        self._items = None
        self._keyed.clear()
        self.size = self._allowance = 0
