"""System checks: settings that would fail at the first connection fail at startup instead."""

from __future__ import annotations

import os
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
    workers = os.environ.get("WEB_CONCURRENCY", "1")
    if settings.broker.startswith("memory:") and workers.isdigit() and int(workers) > 1:
        return [
            checks.Warning(
                f"The memory broker is used with WEB_CONCURRENCY={workers} workers: each "
                "process only sees its own publishes and history.",
                hint='Use the Redis broker: TIDINGS = {"BROKER": "redis://..."}.',
                id="tidings.W001",
            )
        ]
    return []


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
