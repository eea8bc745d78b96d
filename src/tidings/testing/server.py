"""A real server in a subprocess, for tests.

    with live_server("demo.asgi:application") as srv:
        ...  # srv.url, srv.ws_url, srv.log()

The server is uvicorn with tidings' protocols (:data:`tidings.serve.UVICORN_ARGS`, as
``make demo`` and docs/deploy.md run it) on a socket bound here to a free loopback port
and handed to it (``--fd``), so there is no race for the port. It is stopped with
SIGTERM, then killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tidings.serve import UVICORN_ARGS


@dataclass
class LiveServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/realtime/ws"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def live_server(
    app: str,
    *,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    log_path: str | None = None,
    args: tuple[str, ...] = (),
    ready_timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Run ``uvicorn app`` on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    if log_path is None:
        log_path = os.path.join(
            os.environ.get("TMPDIR", "/tmp"), f"tidings-server-{port}-{os.getpid()}.log"
        )
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "info",
                "--timeout-graceful-shutdown",
                "5",
                *UVICORN_ARGS,
                *args,
            ],
            pass_fds=(sock.fileno(),),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    server = LiveServer(host, port, process, log_path)
    try:
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: LiveServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        if "Application startup complete" in server.log():
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")
