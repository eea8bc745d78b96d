"""The broker contract (tidings/brokers/base.py), run against every broker: the kit in
tidings.testing.broker_contract, as a broker of your own would run it.

The Redis broker runs against a real ``redis-server`` (tests/redis_server.py), each test
under its own key prefix.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.redis_server import RedisServer, redis_server
from tidings.brokers import Broker, broker_from_url
from tidings.testing.broker_contract import BrokerContract


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as r:
        yield r


class TestMemoryBroker(BrokerContract):
    broker_url = "memory://"


class TestRedisBroker(BrokerContract):
    @pytest.fixture
    def prefix(self) -> str:
        return f"t{secrets.token_hex(4)}"

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
