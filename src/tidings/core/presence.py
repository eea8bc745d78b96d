"""Presence state, sans I/O: who is on a topic, in Phoenix.Presence's shape.

Every connection that is *tracked* on a topic is one entry, under a random ``ref``:
the member ``key`` and ``info`` the app chose (``tidings.track(..., member=...)``) and
the connection's own ``meta`` (e.g. ``{"state": "editing"}``). Clients see entries
grouped by key, so a user with three tabs is one member with three metas::

    {"42": {"info": {"name": "alice"}, "metas": [{"ref": "kT9...", "state": "viewing"}, ...]}}

Changes are diffs of the same shape: ``{"joins": {...}, "leaves": {...}}``. A meta
update is its old meta leaving and the new one joining. A key that appears in
``joins`` but was not in the state is a first join; a key whose metas all left is a
last leave. Nothing here does I/O: :mod:`tidings.server.tracker` keeps these states in step
with the broker's presence store and other processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

View = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    key: str
    info: dict[str, Any]
    meta: dict[str, Any]

    def stored(self) -> dict[str, Any]:
        return {"key": self.key, "info": self.info, "meta": self.meta}

    @classmethod
    def from_stored(cls, value: Any) -> Entry | None:
        if not isinstance(value, dict) or not isinstance(value.get("key"), str):
            return None
        info, meta = value.get("info"), value.get("meta")
        return cls(
            value["key"],
            info if isinstance(info, dict) else {},
            meta if isinstance(meta, dict) else {},
        )


@dataclass
class Diff:
    joins: View
    leaves: View

    def __bool__(self) -> bool:
        return bool(self.joins or self.leaves)


def _group(items: list[tuple[str, Entry]]) -> View:
    view: View = {}
    for ref, entry in items:
        member = view.setdefault(entry.key, {"info": entry.info, "metas": []})
        member["info"] = entry.info
        member["metas"].append({"ref": ref, **entry.meta})
    return view


class PresenceState:
    """One topic's entries, ref -> :class:`Entry`; every change returns its :class:`Diff`."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def join(self, ref: str, entry: Entry) -> Diff:
        """Add or change an entry (idempotent: the same entry again is no change)."""
        old = self.entries.get(ref)
        if old == entry:
            return Diff({}, {})
        self.entries[ref] = entry
        return Diff(_group([(ref, entry)]), _group([(ref, old)]) if old is not None else {})

    def leave(self, ref: str) -> Diff:
        old = self.entries.pop(ref, None)
        return Diff({}, _group([(ref, old)]) if old is not None else {})

    def sync(self, entries: dict[str, Entry]) -> Diff:
        """Replace every entry with ``entries`` (as read from the store)."""
        joins = [(r, e) for r, e in entries.items() if self.entries.get(r) != e]
        leaves = [(r, e) for r, e in self.entries.items() if entries.get(r) != e]
        self.entries = dict(entries)
        return Diff(_group(joins), _group(leaves))

    def view(self) -> View:
        return _group(list(self.entries.items()))

    def count(self) -> dict[str, int]:
        return {
            "members": len({e.key for e in self.entries.values()}),
            "connections": len(self.entries),
        }
