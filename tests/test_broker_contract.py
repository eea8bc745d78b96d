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

import pytest

from tests.pg_server import Database, pg_database
from tests.redis_cluster import Cluster, redis_cluster
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


class TestRedisBroker(Prefixed):
    @pytest.fixture
    def new_broker(self, redis: RedisServer, prefix: str) -> Callable[[], Broker]:
        url = f"{redis.url}?prefix={prefix}"
        return lambda: broker_from_url(url)

    @pytest.fixture
    def new_broker_freeing(self, redis: RedisServer, prefix: str) -> Callable[[float], Broker]:
        return lambda meta_ttl: broker_from_url(f"{redis.url}?prefix={prefix}&meta_ttl={meta_ttl}")

    @pytest.fixture
    def stored(self, redis: RedisServer, prefix: str) -> Callable[[Broker], Awaitable[int]]:
        """The topics with a key under this test's prefix (a publish's receipt, kept
        a few seconds to make retries safe, is no topic's)."""

        async def count(b: Broker) -> int:
            with redis.client() as c:
                keys = list(c.scan_iter(match=f"{prefix}:*", count=1000))
            return len({k.rsplit(":", 1)[0] for k in keys if ":r:" not in k})

        return count


class TestRedisClusterBroker(Prefixed):
    """On a 3-master cluster (each with a replica): the topics' keys on their slots'
    masters, messages over sharded pub/sub (tidings/brokers/redis/cluster.py)."""

    @pytest.fixture
    def new_broker(self, cluster: Cluster, prefix: str) -> Callable[[], Broker]:
        url = f"{cluster.url}?prefix={prefix}"
        return lambda: broker_from_url(url)

    @pytest.fixture
    def new_broker_freeing(self, cluster: Cluster, prefix: str) -> Callable[[float], Broker]:
        return lambda ttl: broker_from_url(f"{cluster.url}?prefix={prefix}&meta_ttl={ttl}")

    @pytest.fixture
    def stored(self, cluster: Cluster, prefix: str) -> Callable[[Broker], Awaitable[int]]:
        """The topics with a key under this test's prefix, on any master."""

        async def count(b: Broker) -> int:
            with cluster.client() as c:
                keys = list(c.scan_iter(match=f"{prefix}:*", count=1000))
            return len({k.rsplit(":", 1)[0] for k in keys if ":r:" not in k})

        return count


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
