"""The client's pure parts: reconnect delays, position order, a topic's presence.

No I/O: :mod:`tidings.client.connection` feeds them what the server sent. They follow
the JS client's ``backoff.js``, ``positions.js`` and ``presence.js``, so both clients
behave alike (docs/client.md).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidings.core.messages import Position

Members = dict[str, dict[str, Any]]  # key -> {"info": {...}, "metas": [{"ref": ...}, ...]}


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays in seconds: ``min(max, initial * factor ** n) * (1 - jitter * r)``."""

    initial: float = 0.5
    max: float = 15.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        """The wait before reconnect number ``attempt`` (0 after a connection that worked):
        between ``1 - jitter`` times and once the capped exponential delay, so that
        clients cut off together do not all come back at once."""
        return min(self.max, self.initial * self.factor**attempt) * (1 - self.jitter * random())


def is_newer(position: str, last: str | None) -> bool:
    """Whether ``position`` comes after ``last`` (de-duplication). A new epoch is a new
    history, so always newer; positions that do not parse compare as opaque strings."""
    if last is None:
        return True
    try:
        p, seen = Position.parse(position), Position.parse(last)
    except ValueError:
        return position != last
    return p.epoch != seen.epoch or p.offset > seen.offset


class Roster:
    """A topic's presence as this client knows it, kept by the server's ``presence``
    (the whole state) and ``presence_diff`` frames; or, on counts-only topics, ``count``."""

    def __init__(self) -> None:
        self.members: Members = {}
        self.count: dict[str, int] | None = None

    def apply(self, frame: dict[str, Any]) -> None:
        """Take one ``presence`` or ``presence_diff`` frame (docs/protocol.md)."""
        if "count" in frame:
            self.count = frame["count"]
        elif frame.get("op") == "presence":
            self.members = {
                key: {"info": m.get("info", {}), "metas": list(m.get("metas", []))}
                for key, m in (frame.get("state") or {}).items()
                if m.get("metas")
            }
        else:
            self._join(frame.get("joins") or {})
            self._leave(frame.get("leaves") or {})

    def _join(self, joins: Members) -> None:
        for key, member in joins.items():
            current = self.members.setdefault(key, {"info": member.get("info", {}), "metas": []})
            refs = {meta.get("ref") for meta in member.get("metas", [])}
            kept = [meta for meta in current["metas"] if meta.get("ref") not in refs]
            current["metas"] = kept + list(member.get("metas", []))
            current["info"] = member.get("info", current["info"])

    def _leave(self, leaves: Members) -> None:
        for key, member in leaves.items():
            current = self.members.get(key)
            if current is None:
                continue
            # A meta update is its old meta leaving and the new one joining under the
            # same ref: a leave takes away only the meta it names, as it was.
            gone = member.get("metas", [])
            current["metas"] = [meta for meta in current["metas"] if meta not in gone]
            if not current["metas"]:
                del self.members[key]
