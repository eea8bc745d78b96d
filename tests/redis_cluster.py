"""A real Redis Cluster (3 masters + 3 replicas) and a Sentinel setup for tests.

    with redis_cluster() as c:            # skips (or fails under CI=true) without redis-server
        url = c.url                       # "redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,.../"
        c.master_of("some-key").kill()    # SIGKILL a master: its replica takes over
        c.wait_healthy()                  # until every slot has a master again

    with redis_sentinel() as s:           # 1 master, 1 replica, 3 sentinels
        url = s.url                       # "redis+sentinel://127.0.0.1:<s1>,.../tidings/0"
        s.failover()                      # SENTINEL failover, waits for the new master

Every process is a real ``redis-server`` on a free loopback port (see
:mod:`tests.redis_server`); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis
from redis.cluster import RedisCluster, key_slot

from tests.conftest import need
from tests.redis_server import RedisServer, free_port

NODE_TIMEOUT_MS = 1000  # a killed master's replica is promoted ~1-2 s later


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both below 65536."""
    for _ in range(100):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNode(RedisServer):
    """One cluster node: a :class:`RedisServer` started with ``--cluster-enabled yes``."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.port = cluster_port()

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", self.dir,
                "--save", "",
                "--appendonly", "no",
                "--cluster-enabled", "yes",
                "--cluster-config-file", os.path.join(self.dir, "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--logfile", self.log_path,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not self._wait_ready(timeout):
            raise RuntimeError(f"redis-server (cluster) did not start:\n{self.log()[-2000:]}")


class Cluster:
    def __init__(self, nodes: list[ClusterNode]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    def _alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def client(self) -> RedisCluster:
        node = self._alive()[0]
        return RedisCluster(host="127.0.0.1", port=node.port, decode_responses=True)

    def master_of(self, key: str) -> ClusterNode:
        """The node that serves ``key``'s slot now."""
        slot = key_slot(key.encode())
        for node in self._alive():
            with node.client() as c:
                for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every live node says the cluster is ok and no dead node serves a slot."""
        deadline = time.monotonic() + timeout
        alive = {n.port for n in self._alive()}
        while time.monotonic() < deadline:
            ok = True
            for node in self._alive():
                with node.client() as c:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info if isinstance(info, str) else str(info)
                    if "cluster_state:ok" not in text:
                        ok = False
                        break
                    for _start, _end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if int(master[1]) not in alive:
                            ok = False
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become healthy")


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 1) -> Iterator[Cluster]:
    """``masters`` masters, each with ``replicas`` replicas, made by ``redis-cli --cluster
    create``; every node is killed and its directory removed on exit."""
    need("redis-server", shutil.which("redis-server") is not None)
    need("redis-cli", shutil.which("redis-cli") is not None)
    nodes: list[ClusterNode] = []
    try:
        for _ in range(masters * (1 + replicas)):
            node = ClusterNode(tempfile.mkdtemp(prefix="tidings-cluster-"))
            node.start()
            nodes.append(node)
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        cluster = Cluster(nodes)
        cluster.wait_healthy()
        _wait_replicas_synced(nodes, masters * replicas)
        yield cluster
    finally:
        for node in nodes:
            node.kill()
            shutil.rmtree(node.dir, ignore_errors=True)


def _wait_replicas_synced(nodes: list[ClusterNode], expected: int, timeout: float = 20) -> None:
    """Until ``expected`` replicas report their link to the master up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = 0
        for node in nodes:
            with node.client() as c:
                info = c.info("replication")
                up += info.get("role") == "slave" and info.get("master_link_status") == "up"
        if up >= expected:
            return
        time.sleep(0.1)
    raise RuntimeError("the cluster's replicas did not sync")


# -- Sentinel -------------------------------------------------------------------------------
class SentinelSetup:
    SERVICE = "tidings"

    def __init__(self, servers: list[RedisServer], sentinels: list[RedisServer]) -> None:
        self.servers = servers
        self.sentinels = sentinels

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def master_port(self) -> int:
        with self.sentinels[0].client() as c:
            _host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
            return int(port)

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def failover(self, timeout: float = 20.0) -> None:
        """``SENTINEL failover``; returns when the old replica is master and writable."""
        before = self.master_port()
        with self.sentinels[0].client() as c:
            c.execute_command("SENTINEL", "FAILOVER", self.SERVICE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port != before:
                server = next(s for s in self.servers if s.port == port)
                with contextlib.suppress(redis.RedisError), server.client() as c:
                    if c.info("replication").get("role") == "master":
                        return
            time.sleep(0.1)
        raise RuntimeError("the sentinel failover did not finish")


@contextlib.contextmanager
def redis_sentinel(sentinels: int = 3) -> Iterator[SentinelSetup]:
    """A master and one replica, watched by ``sentinels`` sentinels (quorum: a majority)."""
    need("redis-server", shutil.which("redis-server") is not None)
    started: list[RedisServer] = []
    try:
        master = RedisServer(tempfile.mkdtemp(prefix="tidings-sentinel-"))
        master.start()
        started.append(master)
        replica = RedisServer(tempfile.mkdtemp(prefix="tidings-sentinel-"))
        replica.start()
        started.append(replica)
        with replica.client() as c:
            c.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
        _wait_replicas_synced_plain(replica)
        watchers: list[RedisServer] = []
        quorum = sentinels // 2 + 1
        for _ in range(sentinels):
            s = RedisServer(tempfile.mkdtemp(prefix="tidings-sentinel-"))
            s.port = free_port()
            conf = os.path.join(s.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(
                    f"port {s.port}\nbind 127.0.0.1\ndir {s.dir}\nlogfile {s.log_path}\n"
                    f"sentinel monitor {SentinelSetup.SERVICE} 127.0.0.1 {master.port} {quorum}\n"
                    f"sentinel down-after-milliseconds {SentinelSetup.SERVICE} 1000\n"
                    f"sentinel failover-timeout {SentinelSetup.SERVICE} 5000\n"
                )
            s.process = subprocess.Popen(
                ["redis-server", conf, "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            started.append(s)
            if not s._wait_ready(10):
                raise RuntimeError(f"redis-sentinel did not start:\n{s.log()[-2000:]}")
            watchers.append(s)
        setup = SentinelSetup([master, replica], watchers)
        _wait_sentinels_see_replica(setup)
        yield setup
    finally:
        for s in started:
            s.kill()
            shutil.rmtree(s.dir, ignore_errors=True)


def _wait_replicas_synced_plain(replica: RedisServer, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with replica.client() as c:
            if c.info("replication").get("master_link_status") == "up":
                return
        time.sleep(0.1)
    raise RuntimeError("the replica did not sync")


def _wait_sentinels_see_replica(setup: SentinelSetup, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = 0
        for s in setup.sentinels:
            with s.client() as c:
                seen += len(c.execute_command("SENTINEL", "REPLICAS", setup.SERVICE)) > 0
        if seen == len(setup.sentinels):
            return
        time.sleep(0.1)
    raise RuntimeError("the sentinels did not find the replica")
