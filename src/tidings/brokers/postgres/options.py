"""The PostgreSQL broker's URL: where the database is, and the broker's own options.

Two forms::

    postgresql://user:password@db.internal:5432/app?sslmode=require   (or postgres://)
    django://default                                                  a DATABASES alias

The first is a libpq URI, handed to psycopg as it is once the broker's own options are
taken out of its query. The second reuses a Django ``DATABASES`` entry (its engine must
be PostgreSQL): host, port, name, user, password and ``OPTIONS`` come from Django's own
``get_connection_params()``, read when the broker first connects, not when it is made.

The broker's own query options: ``prefix`` (``tidings``: the first part of its table,
function and channel names, so two sites can share a database), ``presence_ttl`` (60),
``meta_ttl`` (86400), ``keepalive`` (10: seconds of listener silence before it asks the
server whether it is still there), ``publish_timeout`` (5: a publish's deadline, retries
included), ``retries`` (2), ``max_connections`` (4 per pool), ``connect_timeout`` (3).
A bad value raises ``ImproperlyConfigured`` when the broker is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")
# What Django's get_connection_params() returns that is not a libpq parameter.
_NOT_LIBPQ = ("cursor_factory", "context", "prepare_threshold", "server_side_binding")


@dataclass(frozen=True)
class Options:
    """The broker's own URL options (see the module docstring)."""

    prefix: str = "tidings"
    presence_ttl: float = 60.0
    meta_ttl: float = 86400.0
    keepalive: float = 10.0
    publish_timeout: float = 5.0
    retries: int = 2
    max_connections: int = 4
    connect_timeout: float = 3.0


class Where:
    """How to connect: :meth:`params` gives psycopg's ``connect()`` keyword arguments."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.alias: str | None = parts.netloc if parts.scheme == "django" else None
        if self.alias is None:
            self.conninfo = url
        elif self.alias:
            self.params()  # a mistake in the settings shows now, not at the first publish
        else:
            raise ImproperlyConfigured(
                f"TIDINGS['BROKER'] = {url!r}: name an alias, django://default"
            )

    def params(self) -> dict[str, Any]:
        if self.alias is None:
            return {"conninfo": self.conninfo}
        from django.db import connections

        connection = connections[self.alias]
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"TIDINGS['BROKER'] = 'django://{self.alias}': that database is "
                f"{connection.vendor}, not PostgreSQL"
            )
        params = dict(connection.get_connection_params())
        for name in _NOT_LIBPQ:
            params.pop(name, None)
        return params

    def describe(self) -> str:
        """Where, for logs and errors (no password)."""
        if self.alias is not None:
            return f"django://{self.alias}"
        parts = urlsplit(self.conninfo)
        host = parts.hostname or dict(parse_qsl(parts.query)).get("host") or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"


def split_url(url: str) -> tuple[Options, Where]:
    """The broker's options, and where the database is (the URL without them)."""
    parts = urlsplit(url)
    known = {f.name: f for f in fields(Options)}
    ours: dict[str, Any] = {}
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        field = known.get(name)
        if field is None:
            rest.append((name, value))
            continue
        kind = {"str": str, "float": float, "int": int}[str(field.type)]
        try:
            ours[name] = kind(value)
        except ValueError:
            bad(url, f"{name}={value!r} is not a {kind.__name__}")
    options = Options(**ours)
    if not _PREFIX.fullmatch(options.prefix):
        bad(url, "prefix must be lower-case letters, digits and _ (40 at most)")
    for name in ("presence_ttl", "meta_ttl", "keepalive", "publish_timeout", "max_connections"):
        if not getattr(options, name) > 0:
            bad(url, f"{name} must be > 0")
    if parts.scheme == "django" and rest:
        bad(url, "a django:// URL takes only the broker's own options")
    rest_url = urlunsplit(parts._replace(query=urlencode(rest)))
    if not parts.netloc:  # postgresql:///db?host=/run/postgresql: urlunsplit drops the "//"
        rest_url = rest_url.replace(f"{parts.scheme}:", f"{parts.scheme}://", 1)
    return options, Where(rest_url)


def bad(url: str, problem: str) -> None:
    raise ImproperlyConfigured(f"TIDINGS['BROKER'] = {url!r}: {problem}")
