"""The Redis broker: many processes, one Redis. ``TIDINGS = {"BROKER": "redis://host:6379/0"}``.

Each topic has a few keys, all hash-tagged ``{topic}`` so a Redis Cluster keeps them on
one shard (see docs/redis.md for the layout)::

    tidings:{rooms.lobby}:meta      HASH    epoch, offset, ttl      (expires: META_TTL)
    tidings:{rooms.lobby}:history   STREAM  o=offset e=event d=data  (HistoryPolicy size/ttl)
    tidings:r:<id>                  STRING  a batch of publishes' receipt (expires in seconds)
    tidings:{rooms.lobby}:presence  ZSET    connection id -> expiry (ms, Redis clock)
    tidings:{rooms.lobby}:members   HASH    connection id -> member info (JSON)
    tidings:0:{rooms.lobby}         pub/sub channel (the db number is in the name: pub/sub
                                    ignores databases)

The parts, each with the guarantees it keeps in its docstring:

- :mod:`~tidings.brokers.redis.options`: the URL options, the names of keys and channels;
- :mod:`~tidings.brokers.redis.broker`: :class:`RedisBroker`: publish (deadline, retries,
  receipts), history and epochs, running the Lua scripts (``lua/*.lua``, read once by
  :mod:`~tidings.brokers.redis.scripts`);
- :mod:`~tidings.brokers.redis.listener`: delivery, over one supervised pub/sub
  connection that fills gaps from history;
- :mod:`~tidings.brokers.redis.presence`: the presence store, with its TTL and refresh;
- :mod:`~tidings.brokers.redis.pools`: pools for one Redis or behind Redis Sentinel
  (``redis+sentinel://``);
- :mod:`~tidings.brokers.redis.cluster`: the broker on a Redis Cluster
  (``redis+cluster://``), with :mod:`~tidings.brokers.redis.slots` (the slot map, the
  shard channels) and :mod:`~tidings.brokers.redis.shards` (sharded pub/sub delivery).
"""

from __future__ import annotations

from tidings.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
