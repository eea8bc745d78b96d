"""Start a target's server in its own process on a free loopback port, stop it after.

A target with ``processes=2`` gets two server processes, each on its own port: the
publisher's (:attr:`Server.port`) and the subscribers' (:attr:`Server.sub_port`).

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

from bench.procstat import rss_bytes
from bench.targets import Target
from bench.wsclient import Tally, connect

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BACKLOG = 4096


@dataclass
class Server:
    """The target's server process(es): the publisher's first, the subscribers' last."""

    target: Target
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]
    log_paths: list[Path]

    @property
    def port(self) -> int:
        """Where the publisher connects."""
        return self.ports[0]

    @property
    def sub_port(self) -> int:
        """Where subscribers connect (the same process unless ``target.processes > 1``)."""
        return self.ports[-1]

    @property
    def pid(self) -> int:
        """The subscribers' server process: its memory is the idle-memory figure."""
        return serving(self.processes[-1].pid)

    @property
    def pids(self) -> list[int]:
        """Every server process, the subscribers' first (CPU is summed over them)."""
        return [serving(p.pid) for p in reversed(self.processes)]

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_paths)

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until a WebSocket handshake on the target's path succeeds on every process."""
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        pending = list(self.ports)
        while pending and time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"{self.target.name} exited early:\n{self.log()}")
            try:
                client = await asyncio.wait_for(
                    connect(Tally(), HOST, pending[0], self.target.path), 5.0
                )
            except (OSError, TimeoutError) as e:
                error = e
                await asyncio.sleep(0.1)
                continue
            client.close()
            pending.pop(0)
        if pending:
            name = self.target.name
            raise RuntimeError(f"{name} not ready after {timeout}s ({error}):\n{self.log()}")


def serving(pid: int) -> int:
    """The process that serves for ``pid``: itself, or its worker when it is a server
    that forks one (granian, hypercorn), followed down to the last."""
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
        except OSError:
            return pid
        if not children:
            return pid
        # the worker, not a helper such as multiprocessing's resource tracker: the largest
        pid = max((int(c) for c in children), key=_rss_or_zero)


def _rss_or_zero(pid: int) -> int:
    try:
        return rss_bytes(pid)
    except (OSError, RuntimeError):
        return 0


@contextlib.contextmanager
def running(target: Target, log_dir: Path, profile_to: Path | None = None) -> Iterator[Server]:
    """Run ``target`` until the block ends; ``profile_to`` runs it under cProfile."""
    if profile_to is not None and target.processes != 1:
        raise SystemExit(f"--profile runs one server process; {target.name} has several")
    if target.setup is not None:
        target.setup()
    ports: list[int] = []
    processes: list[subprocess.Popen[bytes]] = []
    log_paths: list[Path] = []
    try:
        for _ in range(target.processes):
            port, process, log_path = _start(target, log_dir, profile_to)
            ports.append(port)
            processes.append(process)
            log_paths.append(log_path)
        yield Server(target, ports, processes, log_paths)
    finally:
        for process in processes:
            stop(process)


def _start(
    target: Target, log_dir: Path, profile_to: Path | None
) -> tuple[int, subprocess.Popen[bytes], Path]:
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
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                pass_fds=(sock.fileno(),),
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **target.env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    finally:
        sock.close()
    return port, process, log_path


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
