"""A real Pushpin in front of a real tidings server, for tests.

    with grip_stack() as (server, proxy):
        httpx.get(proxy.url + "/headlines/1/")        # through Pushpin

The Pushpin configuration and routes come from docs/deploy.md (the blocks after the
``<!-- pushpin.conf -->`` and ``<!-- routes -->`` markers), so the documented
configuration is the tested one. Each Pushpin has its own run directory (IPC sockets,
logs, a private zurl), free loopback ports, and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from tests.conftest import APP, need, server_env
from tidings.testing import LiveServer, live_server

DEPLOY_DOC = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


def doc_block(marker: str) -> str:
    """The fenced block after ``<!-- marker -->`` in docs/deploy.md."""
    text = DEPLOY_DOC.read_text()
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert m is not None, f"no {marker} block in {DEPLOY_DOC}"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pushpin:
    http_port: int
    control_port: int
    key: str
    backend_port: int
    rundir: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"

    @property
    def control_uri(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def grip_setting(self) -> dict[str, Any]:
        return {"CONTROL_URI": self.control_uri, "KEY": self.key, "ISS": "pushpin"}

    def write_config(self) -> str:
        values = {
            "RUNDIR": self.rundir,
            "HTTP_PORT": self.http_port,
            "CONTROL_PORT": self.control_port,
            "KEY": self.key,
            "BACKEND_PORT": self.backend_port,
        }
        conf = os.path.join(self.rundir, "pushpin.conf")
        with open(conf, "w") as f:
            f.write(Template(doc_block("pushpin.conf")).substitute(values))
        with open(os.path.join(self.rundir, "routes"), "w") as f:
            f.write(Template(doc_block("routes")).substitute(values))
        return conf

    def start(self, timeout: float = 30.0) -> None:
        conf = self.write_config()
        log = open(os.path.join(self.rundir, "pushpin.out"), "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["pushpin", "--config", conf],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pushpin exited:\n{self.log()}")
            if _accepts(self.http_port) and _accepts(self.control_port):
                time.sleep(0.3)  # the proxy and handler finish wiring their sockets
                return
            time.sleep(0.1)
        raise RuntimeError(f"pushpin not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the runner (it stops its services), SIGKILL to its group after."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only its children
            process.wait()
        for name in ("condure", "zurl", "pushpin-proxy", "pushpin-handler"):
            _kill_pidfile(os.path.join(self.rundir, f"{name}.pid"))

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        out = []
        for name in sorted(os.listdir(self.rundir)):
            if name.endswith((".log", ".out")):
                with open(os.path.join(self.rundir, name), errors="replace") as f:
                    out.append(f"== {name}\n{f.read()[-4000:]}")
        return "\n".join(out)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_pidfile(path: str) -> None:
    """A service the runner left behind (it should not): stop it by its recorded PID."""
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, 0)
        os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def grip_stack(
    tidings: dict[str, Any] | None = None, key: str | None = None
) -> Iterator[tuple[LiveServer, Pushpin]]:
    """A tidings server (demo + test app) with ``TIDINGS["GRIP"]`` and a Pushpin in front."""
    need("pushpin", shutil.which("pushpin") is not None)
    rundir = tempfile.mkdtemp(prefix="tidings-pushpin-")
    proxy = Pushpin(
        http_port=free_port(),
        control_port=free_port(),
        key=key or secrets.token_urlsafe(48),
        backend_port=0,
        rundir=rundir,
    )
    settings = {**(tidings or {}), "GRIP": proxy.grip_setting()}
    log_path = os.path.join(rundir, "server.log")
    try:
        with live_server(APP, env=server_env(settings), log_path=log_path) as server:
            proxy.backend_port = server.port
            proxy.start()
            try:
                yield server, proxy
            finally:
                proxy.stop()
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
