"""The PostgreSQL broker: many processes, one PostgreSQL database, nothing else.
``TIDINGS = {"BROKER": "postgresql://user@db:5432/app"}``, or ``"django://default"`` to
use a ``DATABASES`` entry (docs/brokers.md).

History lives in a table; ``LISTEN``/``NOTIFY`` only wakes listeners (a notification
carries a topic name, never a message), so a listener that was away reads what it
missed from the table when it comes back. The parts, each with the guarantees it keeps
in its docstring:

- :mod:`~tidings.brokers.postgres.options`: the URL and the broker's own options;
- :mod:`~tidings.brokers.postgres.schema`: the tables and the publish function, made on
  first use;
- :mod:`~tidings.brokers.postgres.broker`: :class:`PostgresBroker`: publish, history;
- :mod:`~tidings.brokers.postgres.batches`: publishes made at once share a transaction;
- :mod:`~tidings.brokers.postgres.engine` and :mod:`~tidings.brokers.postgres.pool`: the
  broker's own event loop thread, and its connections;
- :mod:`~tidings.brokers.postgres.listener`: delivery, over one supervised LISTEN
  connection;
- :mod:`~tidings.brokers.postgres.presence`: the presence store, with its TTL;
- :mod:`~tidings.brokers.postgres.sweep`: freeing idle topics and expired rows.
"""

from __future__ import annotations

from tidings.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresBroker"]
