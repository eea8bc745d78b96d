"""The broker's Lua scripts, ``lua/<name>.lua``, read once from the package's files.

Every script may safely run twice (a retry after a broken connection): ``publish``
through its receipt, the others because running them again changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType

NAMES = ("publish", "history", "presence_add", "presence_remove", "presence", "rollback")


def _read(name: str) -> str:
    return (files("tidings.brokers.redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


SOURCES: Mapping[str, str] = MappingProxyType({name: _read(name) for name in NAMES})
