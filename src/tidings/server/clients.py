"""Every open subscriber of this process, and whose it is: so a user's can be cut.

When a user logs out, changes their password, is deactivated or deleted, the
connections opened while they were logged in must not keep their identity (an open
WebSocket would go on subscribing and publishing as them). :class:`Clients` is the
node's set of open subscribers (a shutdown closes them all) and, for those of a
logged-in user, an index by the user's key (the primary key as text), so cutting one
user's connections costs the number of those connections, not the number of clients.

A cut is asked for in any process (:func:`tidings.disconnect`) and must reach every
process: it travels as a message on the reserved topic :data:`TOPIC`, which every node
listens to from its start (:meth:`Clients.deliver`). Clients can neither subscribe nor
publish to it: topics starting with ``tidings.`` are refused to them
(:func:`tidings.core.topics.topic_error`).
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from tidings.core.messages import Message

logger = logging.getLogger("tidings.clients")

TOPIC = "tidings.disconnect"  # reserved: clients may not use it
EVENT = "disconnect"


class Closable(Protocol):
    user: Any

    def close(self, code: int, reason: str, *, drop: bool = False) -> None: ...


def user_key(user: Any) -> str | None:
    """The key connections of ``user`` are filed under (its pk as text); ``None`` for
    nobody, an anonymous user, or an unsaved one."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


def who(user: Any) -> str:
    """``user`` as the logs name them: ``alice (pk 3)``, or ``anonymous``."""
    key = user_key(user)
    return "anonymous" if key is None else f"{user} (pk {key})"


def encode(key: str, code: int, reason: str, origin: str) -> str:
    """The data of a cut on :data:`TOPIC`; ``origin`` is the node that asked (it has cut
    its own connections already)."""
    return json.dumps({"user": key, "code": code, "reason": reason, "from": origin})


class Clients:
    """Every open subscriber of a process (weakly held), indexed by user."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._all: weakref.WeakSet[Closable] = weakref.WeakSet()
        self._by_user: dict[str, weakref.WeakSet[Closable]] = {}

    def add(self, client: Closable) -> None:
        self._all.add(client)
        key = user_key(client.user)
        if key is not None:
            mine = self._by_user.get(key)
            if mine is None:
                mine = self._by_user[key] = weakref.WeakSet()
            mine.add(client)

    def discard(self, client: Closable) -> None:
        self._all.discard(client)
        key = user_key(client.user)
        mine = self._by_user.get(key) if key is not None else None
        if mine is not None:
            mine.discard(client)
            if not mine:
                del self._by_user[key]  # type: ignore[arg-type]

    def count(self, user: Any) -> int:
        """How many connections ``user`` holds here (0 for an anonymous user)."""
        key = user_key(user)
        mine = self._by_user.get(key) if key is not None else None
        return 0 if mine is None else len(mine)

    def __iter__(self) -> Iterator[Closable]:
        return iter(list(self._all))

    def __len__(self) -> int:
        return len(self._all)

    def cut(self, key: str, code: int, reason: str) -> int:
        """Close every connection of the user ``key`` with ``code``, dropping what was
        queued for it (it was meant for who they were); return how many."""
        mine = self._by_user.pop(key, None)
        clients = list(mine) if mine is not None else []
        for client in clients:
            client.close(code, reason, drop=True)
        if clients:
            logger.info("closed %d connection(s) of user %s: %s", len(clients), key, reason)
        return len(clients)

    def epoch_changed(self, message: Message) -> None:
        """A cut is not history: nothing to tell."""

    def deliver(self, message: Message) -> None:
        """A cut asked for by any process (the hub calls this for :data:`TOPIC`)."""
        data = message.data
        if message.event != EVENT or not isinstance(data, dict):
            return
        key, code, reason = data.get("user"), data.get("code"), data.get("reason")
        if data.get("from") == self.node_id:
            return  # asked here: already done
        if isinstance(key, str) and isinstance(code, int) and isinstance(reason, str):
            self.cut(key, code, reason)
