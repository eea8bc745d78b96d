"""A real ``redis-server`` for tests: on a free loopback port, in a temp dir, no persistence.

    with redis_server() as r:              # skips (or fails under CI=true) without redis-server
        url = r.url                        # "redis://127.0.0.1:<port>/0"
        r.pause(); r.resume()              # SIGSTOP / SIGCONT: a frozen Redis
        r.restart()                        # comes back empty on the same port
        r.restart(keep_data=True)          # SHUTDOWN SAVE, then load the snapshot
        r.client().flushall()

    with redis_server(tls=True, password="s3cret") as r:   # rediss://:s3cret@...?ssl_ca_certs=

Faults are real processes and real sockets: nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

from tests.conftest import need


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, directory: str, *, tls: bool = False, password: str = "") -> None:
        self.dir = directory
        self.tls = tls
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if tls:  # a self-signed certificate for 127.0.0.1, its own CA
            subprocess.run(
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", self.cert_path("key"), "-out", self.cert_path("cert"),
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip

    def cert_path(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.pem")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert_path('cert')}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> str:
        return os.path.join(self.dir, "redis.sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "redis.log")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, decode_responses=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start on :attr:`port`, loading ``dump.rdb`` from :attr:`dir` if there is one."""
        for attempt in range(3):
            listen = ["--port", str(self.port)]
            if self.tls:
                listen = [
                    "--port", "0",
                    "--tls-port", str(self.port),
                    "--tls-cert-file", self.cert_path("cert"),
                    "--tls-key-file", self.cert_path("key"),
                    "--tls-ca-cert-file", self.cert_path("cert"),
                    "--tls-auth-clients", "no",
                ]  # fmt: skip
            if self.password:
                listen += ["--requirepass", self.password]
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    *listen,
                    "--bind", "127.0.0.1",
                    "--unixsocket", self.socket_path, "--unixsocketperm", "700",
                    "--dir", self.dir,
                    "--save", "",
                    "--appendonly", "no",
                    "--logfile", self.log_path,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ready(timeout):
                return
            self.process.kill()
            self.process.wait()
            if attempt < 2 and "Address already in use" in self.log():
                self.port = free_port()  # lost the race for the port: take another
                continue
            break
        raise RuntimeError(f"redis-server did not start:\n{self.log()[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(redis.RedisError), self.client() as c:
                c.ping()
                return True
            time.sleep(0.05)
        return False

    def stop(self, *, save: bool = False) -> None:
        """``SHUTDOWN`` (``SAVE`` writes a snapshot the next :meth:`start` loads)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        with contextlib.suppress(redis.RedisError), self.client() as c:
            c.execute_command("SHUTDOWN", "SAVE" if save else "NOSAVE")
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: gone at once, data lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, *, keep_data: bool = False, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again on the same port."""
        if keep_data:
            self.stop(save=True)
        else:
            self.kill()
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.dir, "dump.rdb"))
        time.sleep(down_for)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the process freezes; its sockets stay open and nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_server(*, tls: bool = False, password: str = "") -> Iterator[RedisServer]:
    need("redis-server", shutil.which("redis-server") is not None)
    if tls:
        need("openssl", shutil.which("openssl") is not None)
    directory = tempfile.mkdtemp(prefix="tidings-redis-")
    server = RedisServer(directory, tls=tls, password=password)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)
