"""A real nginx in front of tidings servers, configured from docs/deploy.md."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

from tests.conftest import need
from tests.pushpin_server import _accepts, doc_block, free_port


@contextlib.contextmanager
def nginx(backend_ports: list[int]) -> Iterator[str]:
    """nginx on a free port proxying to ``backend_ports``; yields its base URL."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    need("nginx (Debian package 'nginx')", binary is not None)
    assert binary is not None
    port = free_port()
    conf = doc_block("nginx.conf").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert len(backend_ports) == 2
    conf = conf.replace("127.0.0.1:8001", f"127.0.0.1:{backend_ports[0]}")
    conf = conf.replace("127.0.0.1:8002", f"127.0.0.1:{backend_ports[1]}")
    prefix = tempfile.mkdtemp(prefix="tidings-nginx-")
    os.makedirs(os.path.join(prefix, "logs"))
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    process = subprocess.Popen(
        [
            binary,
            "-p",
            prefix,
            "-c",
            path,
            "-e",
            os.path.join(prefix, "logs", "error.log"),
            "-g",
            f"daemon off; pid {prefix}/nginx.pid;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not _accepts(port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(prefix, ignore_errors=True)
