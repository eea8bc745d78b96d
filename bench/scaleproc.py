"""The processes of the scale run (:mod:`bench.scale`): the uvicorn cluster and the
load generators, each started in a process group of its own and stopped by its id.

The cluster is ``uvicorn --workers W`` on a listening socket this process binds and
hands over (``--fd``, as :mod:`bench.server` does), so connections made while no
worker runs wait in its backlog instead of being refused. uvicorn's master starts a
new worker for each one that dies, which is what the reconnect storm relies on.
A worker is ready once it printed ``scale-worker-ready <pid>`` (its settings load
just before it serves, :mod:`bench.servers.scale_settings`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.server import ROOT
from bench.targets import SERVED, flush_redis_db, uvicorn

HOST = "127.0.0.1"
BACKLOG = 4096  # net.core.somaxconn here
PATH = "/realtime/ws"
READY = "scale-worker-ready "


def stop_group(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM the process group ``process`` leads, SIGKILL it after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; its children may not be yet
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (this kernel has no /proc/<pid>/task/*/children)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Cluster:
    """``uvicorn --workers W``: tidings with the Redis broker at ``broker``."""

    def __init__(self, workers: int, broker: str, log_dir: Path) -> None:
        self.workers = workers
        self.broker = broker
        self.log_path = log_dir / "uvicorn.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def flush(self) -> None:
        flush_redis_db(int(self.broker.rsplit("/", 1)[1]))()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(BACKLOG)
        self.port = sock.getsockname()[1]
        app = ("tidings.asgi:get_asgi_application", "--factory", *SERVED)
        argv = uvicorn(*app, "--workers", str(self.workers), "--backlog", str(BACKLOG))
        env = {
            **os.environ,
            "PYTHONDONTWRITEBYTECODE": "1",
            "DJANGO_SETTINGS_MODULE": "bench.servers.scale_settings",
            "BENCH_TIDINGS_BROKER": self.broker,
            "BENCH_SCALE_MARK": "1",
        }
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    argv(sock.fileno()),
                    pass_fds=(sock.fileno(),),
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            sock.close()

    @property
    def master(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return [p for p in children(self.master) if "multiprocessing.spawn" in cmdline(p)]

    def server_pids(self) -> list[int]:
        """The master first, then its workers (the memory figures are their sum)."""
        return [self.master, *self.worker_pids()]

    def ready_pids(self) -> set[int]:
        text = self.log_path.read_text(errors="replace")
        # (two workers may print at once: a marker need not start its line)
        return {int(pid) for pid in re.findall(re.escape(READY) + r"(\d+)", text)}

    def ready(self, deadline: float, since_kill: list[int] | None = None) -> float:
        """Wait until W workers that are not in ``since_kill`` are ready; seconds taken."""
        started = time.monotonic()
        gone = set(since_kill or ())
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"uvicorn exited ({code}):\n{self.log_tail()}")
            workers = set(self.worker_pids()) - gone
            if len(workers) == self.workers and workers <= self.ready_pids():
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"the workers were not ready in time:\n{self.log_tail()}")

    def sockets_by_worker(self) -> dict[str, int]:
        """Open sockets per worker (fds that are sockets): how the kernel spread them."""
        out = {}
        for pid in self.worker_pids():
            n = 0
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            out[str(pid)] = n
        return out

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


class LoadGen:
    """One :mod:`bench.scalegen` process, its share of subscribers from ``source``."""

    def __init__(self, cluster: Cluster, n: int, source: str, topic: str, log_dir: Path) -> None:
        opts = {
            "host": HOST,
            "port": cluster.port,
            "path": PATH,
            "source": source,
            "topic": topic,
            "n": n,
        }
        self.name = f"loadgen {source}"
        with open(log_dir / f"loadgen-{source}.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.scalegen", json.dumps(opts)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                start_new_session=True,
            )
        self._buf = b""

    def send(self, cmd: dict[str, Any]) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(cmd).encode() + b"\n")
        stdin.flush()

    def recv(self, deadline: float) -> dict[str, Any]:
        """The next answer line, or an error once ``deadline`` (monotonic) passes."""
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name} did not answer in time")
            readable, _, _ = select.select([fd], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited ({self.process.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def ready(self, deadline: float) -> None:
        self.recv(deadline)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"cmd": "stop"})
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_group(self.process, timeout=5)
