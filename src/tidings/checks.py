"""System checks: settings that would fail at the first connection fail at startup instead."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register("tidings")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from tidings.brokers import broker_from_url
    from tidings.conf import load

    try:
        settings = load()
        broker_from_url(settings.broker)
    except (ImproperlyConfigured, ValueError, KeyError, TypeError) as e:
        return [checks.Error(f"TIDINGS is misconfigured: {e}", id="tidings.E001")]
    problems = grip_key_problems(settings.grip)
    if problems:
        return problems
    workers, said = worker_count(sys.argv, os.environ)
    found: list[checks.CheckMessage] = []
    if settings.broker.startswith("memory:") and workers > 1:
        found.append(
            checks.Warning(
                f"The memory broker is used with {workers} workers ({said}): each "
                "process only sees its own publishes and history.",
                hint='Use the Redis broker: TIDINGS = {"BROKER": "redis://..."}.',
                id="tidings.W001",
            )
        )
    if settings.metrics and workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        found.append(
            checks.Warning(
                f"Metrics are on with {workers} workers ({said}) but PROMETHEUS_MULTIPROC_DIR "
                "is not set: each scrape of /realtime/metrics sees one worker's.",
                hint="Set it to an empty directory before the server starts (docs/operations.md).",
                id="tidings.W003",
            )
        )
    return found


@checks.register(checks.Tags.staticfiles)  # not among the checks each worker runs at startup
def check_runserver(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py runserver`` is the command of the first installed app that has one:
    listed after ``django.contrib.staticfiles``, tidings' is never run, and Django's
    WSGI server answers 404 at every realtime endpoint."""
    from django.core.management import get_commands

    owner = get_commands().get("runserver", "tidings")
    if owner == "tidings":
        return []
    return [
        checks.Warning(
            f"manage.py runserver is {owner}'s, which does not serve tidings' "
            "WebSocket, SSE and long-poll endpoints (they would answer 404).",
            hint=f'List "tidings" before "{owner}" in INSTALLED_APPS: tidings\' '
            "runserver serves Django's views and the realtime endpoints, and reloads.",
            id="tidings.W002",
        )
    ]


# The servers whose command line may set the number of worker processes, and how.
WORKER_FLAGS = {"uvicorn": ("--workers",), "gunicorn": ("--workers", "-w")}


def worker_count(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str]:
    """How many worker processes the server running this process has, and what said so.

    ``uvicorn --workers N`` and ``gunicorn -w N`` (their workers see the command line
    of the server that started them), then ``GUNICORN_CMD_ARGS``, ``UVICORN_WORKERS``
    and ``WEB_CONCURRENCY`` (both servers' default). 1 when nothing says more.
    """
    path = Path(argv[0]) if argv else Path()
    server = path.parent.name if path.name == "__main__.py" else path.name
    flags = WORKER_FLAGS.get(server, ())
    args = list(argv[1:]) if flags else []
    if server == "gunicorn":
        args = shlex.split(environ.get("GUNICORN_CMD_ARGS", "")) + args  # the line wins
    found = None
    for arg, after in zip(args, [*args[1:], ""], strict=False):
        for flag in flags:
            if arg == flag:
                found = f"{server} {flag} {after}", after
            elif arg.startswith(flag + "=") or (flag == "-w" == arg[:2] and arg[2:].isdigit()):
                found = f"{server} {arg}", arg.removeprefix(flag).removeprefix("=")
    names = ("UVICORN_WORKERS", "WEB_CONCURRENCY") if server == "uvicorn" else ("WEB_CONCURRENCY",)
    if found is None:
        found = next(((f"{n}={environ[n]}", environ[n]) for n in names if n in environ), None)
    if found is None or not found[1].isdigit():
        return 1, "one process"
    return int(found[1]), found[0]


def grip_key_problems(proxies: Any) -> list[checks.CheckMessage]:
    """A GRIP key anyone could know or guess would let anyone pose as the proxy (if the
    server is started anyway, such a key verifies no request: grip/signature.py)."""
    from tidings.grip.signature import DEFAULT_KEY, MIN_KEY_BYTES

    problems: list[checks.CheckMessage] = []
    for proxy in proxies:
        if proxy.key == DEFAULT_KEY:
            problems.append(
                checks.Error(
                    "TIDINGS['GRIP']['KEY'] is Pushpin's default key 'changeme': anyone can "
                    "sign requests as the proxy.",
                    hint="Set a random sig_key in pushpin.conf and the same KEY here "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'). "
                    "Until then no request is trusted as the proxy's.",
                    id="tidings.E002",
                )
            )
        elif len(proxy.key) < MIN_KEY_BYTES:
            problems.append(
                checks.Error(
                    f"TIDINGS['GRIP']['KEY'] has {len(proxy.key)} bytes; at least "
                    f"{MIN_KEY_BYTES} are needed for HS256.",
                    hint="Use a random key of 32 bytes or more (and the same sig_key in "
                    "pushpin.conf).",
                    id="tidings.E003",
                )
            )
    return problems
