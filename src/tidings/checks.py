"""System checks: settings that would fail at the first connection fail at startup instead."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from tidings.brokers import broker_from_url
    from tidings.conf import load

    try:
        settings = load()
        broker_from_url(settings.broker)
    except (ImproperlyConfigured, ValueError, KeyError, TypeError) as e:
        return [checks.Error(f"TIDINGS is misconfigured: {e}", id="tidings.E001")]
    return []
