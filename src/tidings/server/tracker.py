"""Presence across processes: which topics are tracked, and each process's view of them.

    tidings.track("docs.*", member=lambda user, topic:
                  (str(user.pk), {"name": user.get_username()}) if user.is_authenticated else None)

``member`` says who a user is on a topic, and so exactly what others see of them: a
key (several connections of one key are one member) and an info dict. Return ``None``
to leave a user untracked (they may still watch). ``counts_only=True`` shows watchers
counts instead of members: for large rooms.

Entries live in the broker's presence store, so every process can read a topic's
whole state. Each change is also published on the internal topic
``tidings.core.presence.<topic>`` (no history), so the processes that watch it apply it at
once; they also re-read the store every ``PRESENCE_SYNC`` seconds, which turns the
entries of a crashed process (expired by the broker's TTL) into leaves.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from tidings.core.messages import Message
from tidings.core.presence import Diff, Entry, PresenceState
from tidings.core.topics import Pattern

if TYPE_CHECKING:
    from tidings.server.node import Node

logger = logging.getLogger("tidings.tracker")

PREFIX = "tidings.presence."
Member: TypeAlias = Callable[
    [Any, str], "tuple[str, dict[str, Any]] | Awaitable[tuple[str, dict[str, Any]] | None] | None"
]


@dataclass(frozen=True)
class Tracked:
    pattern: Pattern
    member: Member
    counts_only: bool = False

    async def member_of(self, user: Any, topic: str) -> tuple[str, dict[str, Any]] | None:
        found = self.member(user, topic)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            return None
        key, info = found
        return str(key), dict(info)


_tracked: list[Tracked] = []


def track(pattern: str, *, member: Member, counts_only: bool = False) -> Tracked:
    """Enable presence on topics matching ``pattern``; see the module docstring."""
    tracked = Tracked(Pattern(pattern), member, counts_only)
    _tracked.append(tracked)
    return tracked


def find_tracked(topic: str) -> Tracked | None:
    return next((t for t in _tracked if t.pattern.match(topic)), None)


class Watcher(Protocol):
    def presence_frame(self, topic: str, frame: str) -> None:
        """Take a presence frame (state or diff) of ``topic``; must not block."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Tracker:
    """This process's presence: the states of the topics it watches, and its own entries."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.states: dict[str, PresenceState] = {}
        self.watchers: dict[str, dict[Watcher, None]] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._buffered: dict[str, list[Message]] = {}
        self._sync_task: asyncio.Task[None] | None = None

    # -- watching --------------------------------------------------------------------
    async def watch(self, topic: str, watcher: Watcher) -> str:
        """Start sending ``topic``'s presence to ``watcher``; return the state frame."""
        watchers = self.watchers.get(topic)
        if watchers is None:
            watchers = self.watchers[topic] = {}
            loading = self._loading[topic] = asyncio.get_running_loop().create_future()
            self._buffered[topic] = []
            try:
                await self.node.subscribe(PREFIX + topic, self)
                state = PresenceState()
                state.sync(await self._read(topic))
                self.states[topic] = state
                for message in self._buffered.pop(topic):
                    self._apply(state, message)
            finally:
                self._buffered.pop(topic, None)
                del self._loading[topic]
                loading.set_result(None)
            self._start_sync()
        elif topic in self._loading:
            await asyncio.shield(self._loading[topic])
        watchers[watcher] = None
        return self.state_frame(topic)

    async def unwatch(self, topic: str, watcher: Watcher) -> None:
        watchers = self.watchers.get(topic)
        if watchers is None or watcher not in watchers:
            return
        del watchers[watcher]
        if not watchers:
            del self.watchers[topic]
            self.states.pop(topic, None)
            await self.node.unsubscribe(PREFIX + topic, self)

    def state_frame(self, topic: str) -> str:
        state = self.states.get(topic) or PresenceState()
        tracked = find_tracked(topic)
        if tracked is not None and tracked.counts_only:
            return _dumps({"op": "presence", "topic": topic, "count": state.count()})
        return _dumps({"op": "presence", "topic": topic, "state": state.view()})

    async def query(self, topic: str) -> dict[str, Any]:
        """What a ``presence`` query answers: ``{"state": ...}`` or ``{"count": ...}``."""
        state = self.states.get(topic)
        if state is None:  # nobody watches it here: read the store
            state = PresenceState()
            state.sync(await self._read(topic))
        tracked = find_tracked(topic)
        if tracked is not None and tracked.counts_only:
            return {"count": state.count()}
        return {"state": state.view()}

    # -- tracking --------------------------------------------------------------------
    async def join(self, topic: str, ref: str, entry: Entry) -> None:
        """Track (or re-track with a new meta) the connection ``ref`` on ``topic``."""
        await self.node.broker.presence_add(topic, ref, entry.stored())
        await self.node.apublish(PREFIX + topic, "join", _dumps({"ref": ref, **entry.stored()}))

    async def leave(self, topic: str, ref: str) -> None:
        await self.node.broker.presence_remove(topic, ref)
        await self.node.apublish(PREFIX + topic, "leave", _dumps({"ref": ref}))

    # -- changes ---------------------------------------------------------------------
    def deliver(self, message: Message) -> None:
        """A join or leave published by any process (the hub calls this)."""
        topic = message.topic[len(PREFIX) :]
        buffered = self._buffered.get(topic)
        if buffered is not None:
            buffered.append(message)
            return
        state = self.states.get(topic)
        if state is not None:
            self._fan_out(topic, state, self._apply(state, message))

    def _apply(self, state: PresenceState, message: Message) -> Diff:
        data = message.data
        ref = data.get("ref") if isinstance(data, dict) else None
        if not isinstance(ref, str):
            return Diff({}, {})
        if message.event == "leave":
            return state.leave(ref)
        entry = Entry.from_stored(data)
        return state.join(ref, entry) if entry is not None else Diff({}, {})

    def _fan_out(self, topic: str, state: PresenceState, diff: Diff) -> None:
        if not diff:
            return
        tracked = find_tracked(topic)
        if tracked is not None and tracked.counts_only:
            frame = {"op": "presence_diff", "topic": topic, "count": state.count()}
        else:
            frame = {
                "op": "presence_diff",
                "topic": topic,
                "joins": diff.joins,
                "leaves": diff.leaves,
            }
        text = _dumps(frame)  # encoded once for every watcher
        for watcher in list(self.watchers.get(topic, ())):
            watcher.presence_frame(topic, text)

    async def _read(self, topic: str) -> dict[str, Entry]:
        stored = await self.node.broker.presence(topic)
        entries = {}
        for ref, value in stored.items():
            entry = Entry.from_stored(value)
            if entry is not None:
                entries[ref] = entry
        return entries

    # -- staying in step with the store ----------------------------------------------
    def _start_sync(self) -> None:
        interval = self.node.settings.presence_sync
        if self._sync_task is None and interval > 0:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync(interval))

    async def _sync(self, interval: float) -> None:
        """Re-read every watched topic now and then: crashed processes' entries expire."""
        try:
            while self.watchers:
                await asyncio.sleep(interval)
                for topic in list(self.states):
                    try:
                        entries = await self._read(topic)
                    except Exception as e:
                        logger.warning("presence of %r could not be read: %s", topic, e)
                        continue
                    state = self.states.get(topic)
                    if state is not None:
                        self._fan_out(topic, state, state.sync(entries))
        finally:
            self._sync_task = None

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
