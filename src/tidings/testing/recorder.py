"""Record what this process publishes, as ``mail.outbox`` records mail::

    with tidings.testing.capture() as published:
        response = client.post("/rooms/lobby/say", {"message": "hi"})
    published.assert_published("rooms.lobby", data={"handle": "ann", "message": "hi"})

Every publish that goes through this process's node is recorded, whoever made it:
:func:`tidings.publish` and :func:`~tidings.apublish`, a client's publish (after its
topic handler), a model feed's change. A ``publish()`` inside ``transaction.atomic()``
is made when the transaction commits, which in a ``TestCase`` is never: wrap the code in
``self.captureOnCommitCallbacks(execute=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tidings.core.messages import Position
from tidings.server.node import watch_publishes

ANY: Any = object()  # assert_published's default: any data, any event


@dataclass(frozen=True)
class Published:
    """One publish: its topic, event, data (decoded from JSON) and position."""

    topic: str
    event: str
    data: Any
    position: str


class Publishes(list[Published]):
    """What was published while the block ran, oldest first."""

    def on(self, topic: str) -> list[Published]:
        """The publishes to ``topic``."""
        return [p for p in self if p.topic == topic]

    def assert_published(self, topic: str, data: Any = ANY, *, event: Any = ANY) -> Published:
        """The first publish to ``topic`` with this ``data`` and ``event`` (either left
        out: any); :class:`AssertionError` saying what was published instead."""
        for p in self.on(topic):
            if (data is ANY or p.data == data) and (event is ANY or p.event == event):
                return p
        wanted = topic if data is ANY else f"{topic} with data {data!r}"
        if event is not ANY:
            wanted += f" (event {event!r})"
        seen = "\n".join(f"  {p.topic} {p.event}: {p.data!r}" for p in self) or "  nothing"
        raise AssertionError(f"nothing was published to {wanted}; published:\n{seen}")

    def assert_not_published(self, topic: str) -> None:
        """:class:`AssertionError` if anything was published to ``topic``."""
        found = self.on(topic)
        if found:
            raise AssertionError(f"{len(found)} publish(es) to {topic}: {found!r}")


@contextmanager
def capture() -> Iterator[Publishes]:
    """Record this process's publishes while the block runs (see the module)."""
    published = Publishes()

    def record(
        topic: str, event: str, data_json: str, formats_json: str | None, position: Position
    ) -> None:
        published.append(Published(topic, event, json.loads(data_json), str(position)))

    stop = watch_publishes(record)
    try:
        yield published
    finally:
        stop()
