"""Start a target's server in its own process on a free loopback port, stop it after.

The harness binds and listens on the socket itself and hands the fd to the server
(``--fd``), as :mod:`tidings.testing` does: no race for the port, and connections
made before the server is ready wait in the backlog instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.targets import Target
from bench.wsclient import Tally, connect

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BACKLOG = 4096


@dataclass
class Server:
    target: Target
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until a WebSocket handshake on the target's path succeeds."""
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited early:\n{self.log()}")
            try:
                client = await asyncio.wait_for(
                    connect(Tally(), HOST, self.port, self.target.path), 5.0
                )
            except (OSError, TimeoutError) as e:
                error = e
                await asyncio.sleep(0.1)
                continue
            client.close()
            return
        name = self.target.name
        raise RuntimeError(f"{name} not ready after {timeout}s ({error}):\n{self.log()}")


@contextlib.contextmanager
def running(target: Target, log_dir: Path, profile_to: Path | None = None) -> Iterator[Server]:
    """Run ``target`` until the block ends; ``profile_to`` runs it under cProfile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(BACKLOG)
    port = sock.getsockname()[1]
    argv = target.argv(sock.fileno())
    if profile_to is not None:
        assert argv[1] == "-m", argv
        argv = [sys.executable, "-m", "bench.profiling", str(profile_to), *argv[2:]]
    log_path = log_dir / f"{target.name}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            pass_fds=(sock.fileno(),),
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **target.env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    try:
        yield Server(target, port, process, log_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
