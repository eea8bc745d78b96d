"""The broker contract (tidings/brokers/base.py), run against every broker: the kit in
tidings.testing.broker_contract, as a broker of your own would run it.

The Redis broker runs against a real ``redis-server`` (tests/redis_server.py), each test
under its own key prefix.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

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
    def new_broker(self, redis: RedisServer) -> Callable[[], Broker]:
        url = f"{redis.url}?prefix=t{secrets.token_hex(4)}"
        return lambda: broker_from_url(url)
