"""Durable publish: a message written in the same transaction as the data it describes.

``tidings.publish(topic, data, durable=True)`` (and ``durable = True`` on a
:class:`~tidings.feeds.ModelFeed`) does not hand the message to the broker on commit,
where a process that dies between COMMIT and the publish loses it: it inserts a row in
the outbox table (:class:`tidings.models.OutboxMessage`) inside the transaction. The
row commits with the data or rolls back with it. A relay (:mod:`tidings.outbox.relay`:
one in every serving process, or ``manage.py tidings_relay``) then publishes each row
and deletes it: once, in order per topic, even with several relays
(:mod:`tidings.outbox.relay` says how).

With the PostgreSQL broker on the same database (``django://<alias>``) there is no row
and no relay: the message goes into the broker's history in the transaction itself
(:mod:`tidings.outbox.inline`).

Relays are woken rather than left to poll where they can be: a commit in a process
that runs a relay wakes it at once; on PostgreSQL a trigger on the table sends ``NOTIFY
tidings_outbox`` (transactional: only on commit), which every relay listens for; and
every relay polls every ``OUTBOX_POLL`` seconds, the only wake-up SQLite has across
processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from tidings.server.node import Node

CHANNEL = "tidings_outbox"  # PostgreSQL NOTIFY channel

# Called (from any thread) after a durable write commits: wakes this process's relay.
_wakers: list[Callable[[], None]] = []


def write(
    node: Node, topic: str, event: str, data_json: str, formats_json: str | None, alias: str
) -> None:
    """Insert the message into the outbox of database ``alias``, in its current
    transaction if there is one (else on its own: autocommit), and see that a relay is
    woken once it commits; or, when ``node``'s broker is the PostgreSQL broker on that
    database, publish it there in that transaction (:mod:`tidings.outbox.inline`).
    ``ValueError`` for a topic too long for the table."""
    from tidings.models import TOPIC_MAX, OutboxMessage

    if len(topic) > TOPIC_MAX:
        raise ValueError(f"A durable publish's topic has at most {TOPIC_MAX} characters.")
    from tidings.outbox import inline

    if inline.broker_on(node, alias) is not None:  # the PostgreSQL broker on it: one write
        inline.publish(node, alias, topic, event, data_json, formats_json)
        return
    # One INSERT: in the caller's transaction (no savepoint), else in autocommit; on
    # PostgreSQL a trigger sends the NOTIFY (migration 0002).
    OutboxMessage.objects.using(alias).create(
        topic=topic, event=event, data=data_json, formats=formats_json
    )
    transaction.on_commit(wake, using=alias)


def wake() -> None:
    """Wake this process's relays (a commit just wrote to the outbox)."""
    for waker in list(_wakers):
        waker()
