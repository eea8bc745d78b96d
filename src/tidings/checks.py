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
