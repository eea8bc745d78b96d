"""The PostgreSQL broker on the outbox's own database: one write, no relay.

With ``TIDINGS["BROKER"] = "django://<alias>"`` (only that form: a ``postgresql://``
URL of the same database is not recognized), a durable publish on ``alias`` calls the
broker's publish function (:mod:`tidings.brokers.postgres.schema`) on Django's own
connection, inside the caller's transaction: the message enters the topic's history
and its NOTIFY is queued, both committed with the data or rolled back with it. No
outbox row, no relay, and nothing to deduplicate: the commit is the publish.

The cost: the function locks the topic's row until the caller's transaction ends (as
it does in the broker's own short transactions: offsets are commit order), so two
transactions publishing to one topic take turns, and one that waits past the broker's
``publish_timeout`` fails with the broker's deadline error.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from tidings import registry
from tidings.core.messages import Position

if TYPE_CHECKING:
    from tidings.server.node import Node

_ready: set[int] = set()  # brokers whose schema this process has seen made


def broker_on(node: Node, alias: str) -> Any:
    """The node's broker when it is the PostgreSQL broker on database ``alias``."""
    broker: Any = node.broker
    if not type(broker).__module__.startswith("tidings.brokers.postgres"):
        return None
    return broker if getattr(broker._where, "alias", None) == alias else None


def publish(
    node: Node, alias: str, topic: str, event: str, data_json: str, formats_json: str | None
) -> None:
    """Publish in the transaction of ``alias`` (or on its own, outside one)."""
    from tidings.brokers.postgres.broker import KEEP

    broker: Any = node.broker
    if id(broker) not in _ready:  # its tables and function, made by its own pool
        broker._engine.call(broker._query(_nothing), broker.options.publish_timeout + 1)
        _ready.add(id(broker))
    history = registry.lookup(topic, node.settings).history
    p = broker._publish(topic, event, data_json, history, formats_json)
    args = (secrets.token_hex(8), secrets.token_hex(4), p.deadline, KEEP, [p.topic],
            [p.event], [p.data], [p.formats], [p.size], [p.ttl])  # fmt: skip
    with connections[alias].cursor() as cursor:  # (in autocommit: its own transaction)
        cursor.execute(broker._publish_sql, args)
        epoch, _, offset = str(cursor.fetchone()[0]).strip().partition(" ")
    position = Position(epoch, int(offset))

    def told() -> None:  # the node's hooks (a GRIP proxy), once it is published
        for hook in node.published:
            hook(topic, event, data_json, formats_json, position)

    transaction.on_commit(told, using=alias)


async def _nothing(conn: Any) -> None:
    return None
