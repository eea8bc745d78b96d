"""PostgreSQL for tests: a database of their own on the machine's server, or a server
of their own.

    with pg_database() as db:           # a new database on 127.0.0.1:5432 (trust auth),
        url = db.url                    # dropped afterwards; skips (or fails under CI=true)
        db.connect().execute(...)       #   without that server

    with pg_server() as pg:             # initdb + pg_ctl on a free loopback port, in a
        url = pg.url                    # temp dir: a server these tests may break
        pg.restart(down_for=2)          # pg_ctl stop -m fast, wait, start: data kept
        pg.pause(); pg.resume()         # SIGSTOP / SIGCONT: a frozen server
        db.terminate("application_name = 'x'")   # pg_terminate_backend(...) of matching
                                                 # backends of the database
        db.allow_connections(False)              # new connections refused, open ones stay

Other test suites run on this machine at the same time, so every database has a
unique name, and the machine's own server is never restarted. Faults are real
processes and real sockets: nothing is mocked.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from tests.conftest import need
from tests.redis_server import free_port

MACHINE = "host=127.0.0.1 port=5432 user=postgres"


def connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


class Database:
    """A database made for one test module (or test), on a server at ``host:port``."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host, self.port, self.name = host, port, name

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.name}"

    def connect(self) -> Any:
        return connect(f"host={self.host} port={self.port} user=postgres dbname={self.name}")

    def admin(self) -> Any:
        """A connection to the server's ``postgres`` database (not this one)."""
        return connect(f"host={self.host} port={self.port} user=postgres dbname=postgres")

    def terminate(self, where: str) -> int:
        """``pg_terminate_backend`` every backend of this database matching ``where``
        (SQL on pg_stat_activity); how many."""
        with self.admin() as c:
            rows = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = %s AND pid <> pg_backend_pid() AND ({where})",
                (self.name,),
            ).fetchall()
        return len(rows)

    def allow_connections(self, allow: bool) -> None:
        """``ALTER DATABASE ... ALLOW_CONNECTIONS``: refuse new connections (those open
        stay) or allow them again."""
        with self.admin() as c:
            c.execute(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')


@contextlib.contextmanager
def database(admin: str, host: str, port: int) -> Iterator[Database]:
    name = f"tidings_test_{secrets.token_hex(4)}"
    with connect(admin) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Database(host, port, name)
    finally:
        with connect(admin) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def pg_database() -> Iterator[Database]:
    """A new database on the machine's PostgreSQL (127.0.0.1:5432, trust auth)."""
    try:
        connect(f"{MACHINE} dbname=postgres").close()
    except Exception as e:
        need(f"PostgreSQL on 127.0.0.1:5432 ({str(e).strip()})", False)
    with database(f"{MACHINE} dbname=postgres", "127.0.0.1", 5432) as db:
        yield db


def binaries() -> str | None:
    """The newest ``/usr/lib/postgresql/*/bin`` that has initdb and pg_ctl."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return os.path.dirname(found[-1]) if found else None


class PgServer:
    """A PostgreSQL server of the tests' own: ``initdb`` into a temp dir, run by
    ``pg_ctl`` on a free loopback port (as the ``postgres`` user when run as root:
    initdb refuses root)."""

    def __init__(self, bindir: str, directory: str) -> None:
        self.bindir = bindir
        self.dir = directory
        self.data = os.path.join(directory, "data")
        self.port = free_port()
        self.host = "127.0.0.1"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(directory, "postgres")
        self._pg("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self._as, os.path.join(self.bindir, tool), *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    @property
    def admin(self) -> str:
        return f"host={self.host} port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=on"
        log = os.path.join(self.dir, "server.log")
        self._pg("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every connection is cut, committed data is kept."""
        with contextlib.suppress(RuntimeError):
            self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def pids(self) -> list[int]:
        """The postmaster and every process it forked."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def pause(self) -> None:
        """SIGSTOP every process of the server: sockets stay open, nothing answers."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def log(self) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self.dir, "server.log")) as f:
            return f.read()
        return ""


@contextlib.contextmanager
def pg_server() -> Iterator[tuple[PgServer, Database]]:
    """A server of the tests' own, and a database on it."""
    bindir = binaries()
    need("PostgreSQL's initdb and pg_ctl (/usr/lib/postgresql/*/bin)", bindir is not None)
    assert bindir is not None
    directory = tempfile.mkdtemp(prefix="tidings-pg-")
    try:
        server = PgServer(bindir, directory)
        server.start()
        try:
            name = "tidings_test"
            with connect(server.admin) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            yield server, Database(server.host, server.port, name)  # dropped with the server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
