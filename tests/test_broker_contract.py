"""The broker contract (tidings/brokers/base.py), run against every broker: the kit in
tidings.testing.broker_contract, as a broker of your own would run it.

The Redis broker runs against a real ``redis-server`` (tests/redis_server.py) and a real
3-master Redis Cluster (tests/redis_cluster.py), each test under its own key prefix; the
PostgreSQL broker against the machine's PostgreSQL, in a database made for this module
(tests/pg_server.py), each test under its own table prefix.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.pg_server import Database, pg_database
from tests.redis_cluster import Cluster, SentinelSetup, redis_cluster, redis_sentinel
from tests.redis_server import RedisServer, redis_server
from tidings.brokers import Broker, broker_from_url
from tidings.testing.broker_contract import BrokerContract


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with redis_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelSetup]:
    with redis_sentinel(sentinels=1) as s:
        yield s


@pytest.fixture(scope="module")
def pg() -> Iterator[Database]:
    with pg_database() as db:
        yield db


class TestMemoryBroker(BrokerContract):
    broker_url = "memory://"


class Prefixed(BrokerContract):
    """Each test under a prefix of its own (keys, tables), on one shared server."""

    @pytest.fixture
    def prefix(self) -> str:
        return f"t{secrets.token_hex(4)}"


class OnRedis(Prefixed):
    """A Redis broker on ``redis_url`` (a fixture); ``stored`` scans ``keys_client()``."""

    @pytest.fixture
    def new_broker(self, redis_url: str, prefix: str) -> Callable[[], Broker]:
        url = f"{redis_url}?prefix={prefix}"
        return lambda: broker_from_url(url)

    @pytest.fixture
    def new_broker_freeing(self, redis_url: str, prefix: str) -> Callable[[float], Broker]:
        return lambda meta_ttl: broker_from_url(f"{redis_url}?prefix={prefix}&meta_ttl={meta_ttl}")

    @pytest.fixture
    def stored(
        self, keys_client: Callable[[], Any], prefix: str
    ) -> Callable[[Broker], Awaitable[int]]:
        """The topics with a key under this test's prefix (a publish's receipt, kept
        a few seconds to make retries safe, is no topic's)."""

        async def count(b: Broker) -> int:
            with keys_client() as c:
                keys = list(c.scan_iter(match=f"{prefix}:*", count=1000))
            return len({k.rsplit(":", 1)[0] for k in keys if ":r:" not in k})

        return count


class TestRedisBroker(OnRedis):
    @pytest.fixture
    def redis_url(self, redis: RedisServer) -> str:
        return redis.url

    @pytest.fixture
    def keys_client(self, redis: RedisServer) -> Callable[[], Any]:
        return redis.client


class TestRedisClusterBroker(OnRedis):
    """On a 3-master cluster (each with a replica): the topics' keys on their slots'
    masters, messages over sharded pub/sub (tidings/brokers/redis/cluster.py)."""

    @pytest.fixture
    def redis_url(self, cluster: Cluster) -> str:
        return cluster.url

    @pytest.fixture
    def keys_client(self, cluster: Cluster) -> Callable[[], Any]:
        return cluster.client  # scans every master


class TestRedisSentinelBroker(OnRedis):
    """Behind one sentinel, a master and its replica (publishes WAIT for the replica)."""

    @pytest.fixture
    def redis_url(self, sentinel: SentinelSetup) -> str:
        return sentinel.url

    @pytest.fixture
    def keys_client(self, sentinel: SentinelSetup) -> Callable[[], Any]:
        return lambda: sentinel.master().client()


class TestPostgresBroker(Prefixed):
    @pytest.fixture
    def new_broker(self, pg: Database, prefix: str) -> Callable[[], Broker]:
        url = f"{pg.url}?prefix={prefix}&max_connections=2"
        return lambda: broker_from_url(url)

    @pytest.fixture
    def new_broker_freeing(self, pg: Database, prefix: str) -> Callable[[float], Broker]:
        return lambda meta_ttl: broker_from_url(f"{pg.url}?prefix={prefix}&meta_ttl={meta_ttl}")

    @pytest.fixture
    def stored(self, pg: Database, prefix: str) -> Callable[[Broker], Awaitable[int]]:
        """The topics with a row in this test's topics table."""

        async def count(b: Broker) -> int:
            with pg.connect() as c:
                row = c.execute(f"SELECT count(*) FROM {prefix}_topics").fetchone()
            return int(row[0])

        return count
