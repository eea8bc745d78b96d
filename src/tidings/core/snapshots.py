"""A model feed's snapshot, and the changes it already shows.

A subscription with ``initial: true`` gets the rows of its topic, read after the
topic's position, then every change after that position. Changes committed between
the two reads (or committed before the snapshot but published just after it:
publishing follows the commit) are both in the snapshot and sent after it; this filter
drops those. Rows and changes are plain JSON values here (the server encodes rows
with Django's encoder before they reach the core), so they compare with ``==``.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


class SnapshotFilter:
    """Drops the changes a snapshot already shows, and remembers the ones it lets by.

    With a version field the rows are compared by version (a change whose version is
    not above the row's is already shown); without one, only an exact repeat is
    recognised. A delete of a row the snapshot does not have was deleted before it,
    unless the row arrived since.
    """

    __slots__ = ("rows",)

    def __init__(self, rows: list[Row]) -> None:
        self.rows: dict[Any, Row] = {row["pk"]: row for row in rows}

    def passes(self, message: Any) -> bool:
        """Should this change (a message of the feed's topic) be sent after the snapshot?"""
        data = message.data
        if not isinstance(data, dict):
            return True
        pk, action = data.get("pk"), data.get("action")
        row = self.rows.get(pk)
        if action == "delete":
            if row is None:
                return False  # not in the snapshot, not seen since: gone before it
            del self.rows[pk]
            return True
        if row is not None:
            version = data.get("version")
            if version is not None and row.get("version") is not None:
                if version <= row["version"]:
                    return False
            elif row["data"] == data.get("data"):
                return False
        self.rows[pk] = {"pk": pk, "data": data.get("data"), "version": data.get("version")}
        return True
