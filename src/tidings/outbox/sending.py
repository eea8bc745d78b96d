"""Publishing one outbox row, through the broker's idempotent receipt where it has one.

A relay publishes a row, then deletes it in its transaction. If it dies in between,
the row stays, and the next relay publishes it again. The Redis broker's publish
script keeps a *receipt* (``lua/publish.lua``: a batch that already ran under a
receipt key returns what it returned then and publishes nothing), so a row is sent
under a receipt named after the row itself, ``<prefix>:r:outbox:<row receipt>:<attempt>``,
which lasts :data:`RECEIPT_TTL`: the second relay gets the first one's position back
instead of publishing twice. The receipt is deleted once the row is.

``attempts`` moves on only when Redis answered ``late`` (the try reached Redis after its
deadline: nothing was published, and that answer is what the receipt now keeps).

The PostgreSQL broker's publish function keeps receipts too (``{p}_receipts``), but
its sweep deletes them after ``max(60 s, 4 * (publish_timeout + connect_timeout))``:
there the row's receipt, ``outbox:<row receipt>``, spares a second publish when
another relay takes the row over within that time (one running beside it does, as
soon as the dead one's connection drops); later, it is published again. A try that
arrived past its deadline rolled back, receipt included, so it needs no new one.

The memory broker needs no receipt: it lives and dies with the relay's process, and
its subscribers' connections with it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from tidings import metrics, registry
from tidings.core.messages import Position
from tidings.exceptions import BrokerError

if TYPE_CHECKING:
    from tidings.models import OutboxMessage
    from tidings.server.node import Node

logger = logging.getLogger("tidings.outbox")

RECEIPT_TTL = 7 * 86400.0  # seconds: longer than any relay outage worth surviving


class Late(BrokerError):
    """The broker refused the try as late: nothing was published; try again anew."""


def receipt_key(prefix: str, row: OutboxMessage) -> str:
    return f"{prefix}:r:outbox:{row.receipt}:{row.attempts}"


def send(node: Node, row: OutboxMessage) -> Position:
    """Publish ``row`` once (by receipt on Redis and PostgreSQL), then tell the node's
    hooks (a GRIP proxy); a hook that fails is logged: the row is published all the
    same, and must not be published again for it."""
    broker: Any = node.broker
    kind = type(broker).__module__
    history = registry.lookup(row.topic, node.settings).history
    started = time.perf_counter()
    if kind.startswith("tidings.brokers.redis"):
        position = _redis(broker, row, history)
    elif kind.startswith("tidings.brokers.postgres"):
        position = _postgres(broker, row, history)
    else:
        position = broker.publish(row.topic, row.event, row.data, history, row.formats)
    metrics.published("server", time.perf_counter() - started)
    for hook in node.published:
        try:
            hook(row.topic, row.event, row.data, row.formats, position)
        except Exception:
            logger.exception("a publish hook failed on outbox row %s (it is published)", row.id)
    return position


def _redis(broker: Any, row: OutboxMessage, history: Any) -> Position:
    """The publish script, run for this one row under the row's own receipt.

    (It reads the broker's script arguments as the broker builds them: the broker
    offers no receipt of the caller's choosing.)
    """
    from tidings.brokers.redis.options import ms, new_id

    pending = broker._pending(row.topic, row.event, row.data, history, row.formats)
    keys = [receipt_key(broker.names.prefix, row), *pending.keys]
    args = [ms(broker.options.meta_ttl), new_id(), ms(RECEIPT_TTL), *pending.args]
    try:
        reply = broker._publish_sync(keys=keys, args=args)
    except Exception as e:
        raise BrokerError(f"Could not publish outbox row {row.id} to Redis: {e}") from e
    line = str(reply).split("\n")[1]
    if line == "late":
        raise Late(f"Redis refused outbox row {row.id} as late; it is tried again.")
    epoch, _, offset = line.partition(" ")
    return Position(epoch, int(offset))


def _postgres(broker: Any, row: OutboxMessage, history: Any) -> Position:
    """The publish function, called for this one row under the row's own receipt (on
    the broker's engine, as the broker's own batches are)."""
    from tidings.brokers.postgres.broker import KEEP

    p = broker._publish(row.topic, row.event, row.data, history, row.formats)
    args = (f"outbox:{row.receipt}", secrets.token_hex(4), p.deadline, KEEP, [p.topic],
            [p.event], [p.data], [p.formats], [p.size], [p.ttl])  # fmt: skip

    async def call(conn: Any) -> str:
        found = await (await conn.execute(broker._publish_sql, args)).fetchone()
        return str(found[0])

    timeout = broker.options.publish_timeout + 1
    try:
        line = broker._engine.call(broker._query(call), timeout).strip()
    except Exception as e:
        raise BrokerError(f"Could not publish outbox row {row.id} to PostgreSQL: {e}") from e
    epoch, _, offset = line.partition(" ")
    return Position(epoch, int(offset))


def forget(node: Node, rows: list[OutboxMessage]) -> None:
    """Delete the receipts of rows that are gone from the outbox (best effort: else
    they expire)."""
    broker: Any = node.broker
    if rows and type(broker).__module__.startswith("tidings.brokers.redis"):
        with contextlib.suppress(Exception):  # (else they expire within RECEIPT_TTL)
            broker._sync.unlink(*(receipt_key(broker.names.prefix, r) for r in rows))
