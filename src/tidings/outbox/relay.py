"""The relay: publishes the outbox's rows and deletes them, once, in order per topic.

One pass (:func:`relay_pass`) is one transaction on the outbox's database:

1. Claim **heads**: the oldest row of each topic (no older row of its topic exists),
   locked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so each relay running at the same
   time gets other topics and none waits for another.
2. Lock the rows of those topics from their heads on, oldest first (no ``SKIP
   LOCKED``: another relay holds none of them, as it would then hold their older head).
3. Publish them in ``id`` order (:mod:`tidings.outbox.sending`: by receipt on Redis), and
   delete those published, in the same transaction. A failure stops the pass there, so
   no row is published after an older row of its topic that was not.

A topic's rows are thus only ever published by the one relay that holds its head,
oldest first; the next pass of any relay starts after the commit. A relay that dies
mid-pass leaves its rows (its transaction rolls back, its locks go with its
connection) and the next relay publishes them; on Redis, the receipt of a row it had
already published returns that first position instead of publishing again.

SQLite has no row locks: a pass first takes the database's write lock (a write
statement), so passes of several processes run one after another, and a pass holds
that lock while it publishes (milliseconds per row; writers wait for it, within their
``timeout``).

:class:`Relay` runs passes as a service of the node (every serving process, unless
``OUTBOX_RELAY`` is off) or in ``manage.py tidings_relay``: in a thread of its own
(the ORM is sync), while there is work; then it waits for a wake-up (a commit in this
process, PostgreSQL's ``NOTIFY tidings_outbox``) or ``OUTBOX_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, router, transaction
from django.db.models import Exists, OuterRef, Q

from tidings import outbox
from tidings.outbox.sending import Late, forget, send

if TYPE_CHECKING:
    from tidings.models import OutboxMessage
    from tidings.server.node import Node

logger = logging.getLogger("tidings.outbox")

BATCH = 100  # rows per pass
LATE_RETRIES = 3  # passes at once after a "late" answer, per drain (clock skew: forever)


def aliases() -> list[str]:
    """The databases that hold an outbox (where the tidings app is migrated)."""
    from tidings.models import OutboxMessage

    return [a for a in connections if router.allow_migrate_model(a, OutboxMessage)]


def relay_pass(node: Node, alias: str, limit: int = BATCH) -> int:
    """Publish and delete up to ``limit`` rows of ``alias``'s outbox; return how many.

    Raises what the database or the broker raised; a broker error only once the rows
    published before it are deleted (committed), so none of them is published again.
    """
    from tidings.models import OutboxMessage

    rows = OutboxMessage.objects.using(alias)
    if not rows.exists():  # (no lock taken for nothing: the usual answer)
        return 0
    sent: list[OutboxMessage] = []
    error: Exception | None = None
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if connection.vendor == "sqlite":  # the write lock first: no two passes at once
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {OutboxMessage._meta.db_table} SET id = id WHERE 0")
        older = rows.filter(topic=OuterRef("topic"), id__lt=OuterRef("id"))
        heads = rows.filter(~Exists(older)).order_by("id").select_for_update(skip_locked=True)
        claimed = list(heads.values_list("topic", "id")[:limit])
        if not claimed:
            return 0
        # from each head on: a row of the topic committed since, older than its head,
        # is a head for a later pass (taking it here could deadlock with its taker)
        mine = functools.reduce(operator.or_, (Q(topic=t, id__gte=i) for t, i in claimed))
        batch = list(rows.filter(mine).order_by("id").select_for_update()[:limit])
        for row in batch:
            try:
                send(node, row)
            except Late as e:  # nothing published: a fresh receipt next time
                rows.filter(id=row.id).update(attempts=row.attempts + 1)
                error = e
                break
            except Exception as e:  # its topic's later rows wait for it: stop here
                error = e
                break
            sent.append(row)
        if sent:  # committed even when a row failed: those are published
            rows.filter(id__in=[r.id for r in sent]).delete()
    forget(node, sent)
    if error is not None:
        raise error
    return len(sent)


class Relay:
    """Relays every outbox (:func:`aliases`) until stopped; a service of the node."""

    def __init__(self, node: Node, poll: float) -> None:
        self.node = node
        self.poll = poll
        self.relayed = 0
        self.last_error: str | None = None
        self.failing = False
        self._missing: set[str] = set()  # databases without the table (not migrated)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._tasks:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-outbox")
        outbox._wakers.append(self.wake)
        self._tasks = [loop.create_task(self.run(), name="tidings-outbox-relay")]
        for alias in aliases():
            if connections[alias].vendor == "postgresql":
                self._tasks.append(loop.create_task(self._listen(alias)))

    def wake(self) -> None:
        """Run a pass soon (any thread)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def health(self) -> dict[str, Any]:
        return {
            "connected": not self.failing,
            "relayed": self.relayed,
            "last_error": self.last_error,
        }

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.wake in outbox._wakers:
            outbox._wakers.remove(self.wake)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, connections.close_all)
            thread.shutdown(wait=False)

    async def run(self) -> None:
        """Passes while there is work; then wait for a wake-up or ``poll`` seconds."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                done = await loop.run_in_executor(self._thread, self.drain)
            except Exception as e:
                self.failing, self.last_error = True, f"{type(e).__name__}: {e}"
                logger.warning("the outbox relay failed: %s; trying again", e)
            else:
                self.failing = False
                self.relayed += done
            with contextlib.suppress(TimeoutError):  # (no task per wait: a steady count)
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()

    def drain(self) -> int:
        """Passes over every outbox until they are empty (in the relay's thread)."""
        node = self.node
        if node.loop is not None and not node.broker.health().get("connected"):
            return 0  # (no locks held through a publish timeout; the poll comes back)
        total = 0
        for alias in aliases():
            if alias in self._missing:
                continue
            connections[alias].close_if_unusable_or_obsolete()
            late = 0
            try:
                while True:
                    try:
                        n = relay_pass(self.node, alias)
                    except Late:  # its row has a fresh receipt now: again, a few times
                        late += 1
                        if late > LATE_RETRIES:
                            raise
                        continue
                    if not n:
                        break
                    total += n
            except DatabaseError:
                if not self._no_table(alias):
                    raise
        return total

    def _no_table(self, alias: str) -> bool:
        """True (and said once) when ``alias`` has no outbox table: not migrated."""
        from tidings.models import OutboxMessage

        table = OutboxMessage._meta.db_table
        try:
            with connections[alias].cursor() as cursor:
                tables = connections[alias].introspection.table_names(cursor)
        except DatabaseError:
            return False
        if table in tables:
            return False
        self._missing.add(alias)
        logger.warning("database %r has no %s table (run migrate): no outbox there", alias, table)
        return True

    async def _listen(self, alias: str) -> None:
        """``LISTEN tidings_outbox`` on a PostgreSQL database: each commit of a durable
        write wakes the relay. Reconnects with backoff; polling covers the gaps."""
        import psycopg

        from tidings.pgfeed import _dsn

        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**_dsn(alias), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {outbox.CHANNEL}")
                    delay = 0.2
                    self.wake()  # what committed while it was not listening
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("the outbox relay's LISTEN on %r failed: %s", alias, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
