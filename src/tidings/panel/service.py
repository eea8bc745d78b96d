"""Each process's side of the admin panel: answer an ask with snapshots of itself."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from tidings.core.messages import Message
from tidings.server.clients import user_key, who

if TYPE_CHECKING:
    from tidings.server.node import Node

logger = logging.getLogger("tidings.panel")

TOPIC = "tidings-panel"  # the snapshots (staff may subscribe)
ASK = "tidings-panel.ask"  # "tell me" (staff may publish)
INTERVAL = 2.0  # seconds between a process's snapshots while asked
WATCHED = 60.0  # seconds an ask lasts
LISTED = 100  # users and topics listed per process, the busiest first


def snapshot(node: Node) -> dict[str, Any]:
    """What this process holds now: connections, users, topics, presence, broker."""
    transports: Counter[str] = Counter()
    users: Counter[tuple[str, str, str]] = Counter()
    for client in node.clients:
        transport = str(getattr(client, "transport", "?"))
        transports[transport] += 1
        key = user_key(client.user)
        if key is not None:
            users[(key, who(client.user), transport)] += 1
    topics = Counter(
        {t: n for t, n in node.hub.counts().items() if not t.startswith(("tidings.", TOPIC))}
    )
    return {
        "node": node.id,
        "process": f"{socket.gethostname()}:{os.getpid()}",
        "at": time.time(),
        "connections": dict(transports),
        "users": [
            {"key": key, "user": name, "transport": transport, "connections": n}
            for (key, name, transport), n in users.most_common(LISTED)
        ],
        "topics": [{"topic": t, "subscribers": n} for t, n in topics.most_common(LISTED)],
        "presence": {t: state.count() for t, state in sorted(node.tracker.states.items())},
        "broker": node.broker.health(),
    }


class PanelService:
    """A node service: listens on :data:`ASK`, and while asked publishes snapshots."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._until = 0.0
        self._listening: asyncio.Task[None] | None = None
        self._reporting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listening = asyncio.get_running_loop().create_task(self.node.subscribe(ASK, self))

    async def stop(self) -> None:
        for task in (self._listening, self._reporting):
            if task is not None:
                task.cancel()
        self._listening = self._reporting = None
        await self.node.unsubscribe(ASK, self)

    def health(self) -> dict[str, Any]:
        return {"connected": True}  # the panel never makes a process unhealthy

    def epoch_changed(self, message: Message) -> None:
        """An ask is not history: nothing to tell."""

    def deliver(self, message: Message) -> None:
        """An ask: report for the next :data:`WATCHED` seconds."""
        self._until = time.monotonic() + WATCHED
        if self._reporting is None or self._reporting.done():
            self._reporting = asyncio.get_running_loop().create_task(self._report())

    async def _report(self) -> None:
        while time.monotonic() < self._until:
            try:
                await self.node.apublish(TOPIC, "node", json.dumps(snapshot(self.node)))
            except Exception as e:  # the broker is down: the page shows the gap
                logger.warning("admin panel: could not publish a snapshot: %s", e)
            await asyncio.sleep(INTERVAL)
