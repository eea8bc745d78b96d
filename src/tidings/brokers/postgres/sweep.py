"""What the broker frees, now and then: idle topics, old messages, expired presence
entries, receipts no retry can still ask for.

Every ``min(meta_ttl / 2, 30)`` seconds each process runs :data:`STATEMENTS` in one
transaction, unless another process is running them at that moment (a transaction-level
advisory lock, tried, not waited for):

- a topic untouched (no publish, no read) for ``max(meta_ttl, its history ttl)``
  seconds, with no subscriber in this process, is freed: its row and its messages. Its
  next publish makes a new epoch. A topic subscribed in another process may be freed
  too, as a Redis ``meta`` key expires: that process then sees the new epoch, logs it,
  and goes on;
- a message older than ``max(its topic's ttl, LINGER)`` is deleted (history serves only
  what the policy keeps anyway; ``LINGER`` leaves listeners time to read it);
- expired presence entries, and receipts older than ``RECEIPT_TTL``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tidings.brokers.postgres.engine import every
from tidings.brokers.postgres.options import Options
from tidings.brokers.postgres.pool import Conn

LINGER = 30.0
NOW = "extract(epoch FROM clock_timestamp())"
LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"
STATEMENTS = (
    f"""WITH gone AS (
      DELETE FROM {{p}}_topics WHERE touched < {NOW} - greatest(%(meta_ttl)s, ttl)
        AND NOT (topic = ANY(%(subscribed)s::text[])) RETURNING topic
    ) DELETE FROM {{p}}_messages m USING gone WHERE m.topic = gone.topic""",
    f"""DELETE FROM {{p}}_messages m USING {{p}}_topics t
      WHERE m.topic = t.topic AND m.at < {NOW} - greatest(t.ttl, %(linger)s)""",
    f"DELETE FROM {{p}}_presence WHERE expires < {NOW}",
    f"DELETE FROM {{p}}_receipts WHERE made < {NOW} - %(receipt_ttl)s",
)

Run = Callable[[str, Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]


class Sweep:
    """Runs the sweep until cancelled; ``subscribed()`` names this process's topics."""

    def __init__(self, run: Run, options: Options, subscribed: Callable[[], list[str]]) -> None:
        self._run = run
        self._options = options
        self._subscribed = subscribed
        self._statements = [s.replace("{p}", options.prefix) for s in STATEMENTS]
        self.interval = min(options.meta_ttl / 2, 30.0)
        self.receipt_ttl = max(60.0, 4 * (options.publish_timeout + options.connect_timeout))

    async def run(self) -> None:
        await every(self.interval, "PostgreSQL sweep", lambda: self._run("sweep", self.once))

    async def once(self, conn: Conn) -> bool:
        """One sweep on ``conn``; false if another process was sweeping."""
        params = {
            "meta_ttl": self._options.meta_ttl,
            "subscribed": self._subscribed(),
            "linger": LINGER,
            "receipt_ttl": self.receipt_ttl,
        }
        async with conn.transaction():
            row = await (
                await conn.execute(LOCK, (f"tidings-sweep:{self._options.prefix}",))
            ).fetchone()
            if not row or not row[0]:
                return False
            for statement in self._statements:
                await conn.execute(
                    statement, {k: v for k, v in params.items() if f"%({k})s" in statement}
                )
        return True
