"""Presence across processes: each process's view of the topics its clients watch.

Which topics are tracked, and who a user is on them, is declared with
:func:`tidings.track` (:mod:`tidings.registry`):

    tidings.track("docs.*", member=lambda user, topic:
                  (str(user.pk), {"name": user.get_username()}) if user.is_authenticated else None)

Entries live in the broker's presence store, so every process can read a topic's
whole state. Each change is also published on the internal topic
``tidings.core.presence.<topic>`` (no history), so the processes that watch it apply it at
once; they also re-read the store every ``PRESENCE_SYNC`` seconds, which turns the
entries of a crashed process (expired by the broker's TTL) into leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from tidings.brokers.base import Broker
from tidings.core.messages import Message
from tidings.core.presence import Diff, Entry, PresenceState
from tidings.registry import TopicInfo

logger = logging.getLogger("tidings.tracker")

PREFIX = "tidings.presence."


class Host(Protocol):
    """What the tracker needs of the node it belongs to."""

    broker: Broker

    @property
    def presence_sync(self) -> float: ...
    def lookup(self, topic: str) -> TopicInfo: ...
    async def subscribe(self, topic: str, subscriber: Any) -> None: ...
    async def unsubscribe(self, topic: str, subscriber: Any) -> None: ...
    async def apublish(self, topic: str, event: str, data_json: str) -> Any: ...


class Watcher(Protocol):
    def presence_frame(self, topic: str, frame: str) -> None:
        """Take a presence frame (state or diff) of ``topic``; must not block."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Tracker:
    """This process's presence: the states of the topics it watches, and its own entries."""

    def __init__(self, node: Host) -> None:
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

    def _counts_only(self, topic: str) -> bool:
        tracked = self.node.lookup(topic).tracked
        return tracked is not None and tracked.counts_only

    def state_frame(self, topic: str) -> str:
        state = self.states.get(topic) or PresenceState()
        if self._counts_only(topic):
            return _dumps({"op": "presence", "topic": topic, "count": state.count()})
        return _dumps({"op": "presence", "topic": topic, "state": state.view()})

    async def query(self, topic: str) -> dict[str, Any]:
        """What a ``presence`` query answers: ``{"state": ...}`` or ``{"count": ...}``."""
        state = self.states.get(topic)
        if state is None:  # nobody watches it here: read the store
            state = PresenceState()
            state.sync(await self._read(topic))
        if self._counts_only(topic):
            return {"count": state.count()}
        return {"state": state.view()}

    # -- tracking --------------------------------------------------------------------
    async def join(self, topic: str, ref: str, entry: Entry) -> None:
        """Track (or re-track with a new meta) the connection ``ref`` on ``topic``."""
        await self.node.broker.presence.add(topic, ref, entry.stored())
        await self.node.apublish(PREFIX + topic, "join", _dumps({"ref": ref, **entry.stored()}))

    async def leave(self, topic: str, ref: str) -> None:
        await self.node.broker.presence.remove(topic, ref)
        await self.node.apublish(PREFIX + topic, "leave", _dumps({"ref": ref}))

    # -- changes ---------------------------------------------------------------------
    def epoch_changed(self, message: Message) -> None:
        """Presence changes are not history: nothing to tell."""

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
        if self._counts_only(topic):
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
        stored = await self.node.broker.presence.entries(topic)
        entries = {}
        for ref, value in stored.items():
            entry = Entry.from_stored(value)
            if entry is not None:
                entries[ref] = entry
        return entries

    # -- staying in step with the store ----------------------------------------------
    def _start_sync(self) -> None:
        interval = self.node.presence_sync
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
