"""Settings: one ``TIDINGS`` dict in Django settings, read once, reset when it changes.

Every key is optional. See docs/settings.md for what each one does.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from tidings.core.messages import HistoryPolicy
from tidings.core.topics import Pattern

DEFAULTS: dict[str, Any] = {
    "BROKER": "memory://",
    "PATH": "/realtime/",
    "ALLOWED_ORIGINS": [],
    "MAX_FRAME_BYTES": 64 * 1024,
    "MAX_SUBSCRIPTIONS": 100,
    "QUEUE_SIZE": 1000,
    "RATE_LIMIT": {"rate": 100.0, "burst": 200},
    "TOPIC_MAX_LENGTH": 200,
    "HISTORY_SIZE": 100,
    "HISTORY_TTL": 300.0,
    "HISTORY": {},
    "RULES": {},
    "COALESCE": {},
    "SSE_KEEPALIVE": 15.0,
    "SSE_RETRY_MS": 2000,
    "POLL_TIMEOUT": 25.0,
    "POLL_MAX_TIMEOUT": 120.0,
    "PRESENCE_SYNC": 10.0,
    "PG_LISTEN": False,
    "MAX_DEPTH": 32,
    "HEADER_TIMEOUT": 10.0,
    "IDLE_TIMEOUT": 60.0,
    "MAX_CONNECTIONS_PER_IP": 100,
    "MAX_CONNECTIONS_PER_USER": 100,
    "TOKEN_TTL": 3600.0,
    "DRAIN_SECONDS": 5.0,
    "CONNECT_RATE": {"rate": 500.0, "burst": 1000},
    "METRICS": True,
    "TRACING": True,
    "METRICS_TOKEN": None,
    "OUTBOX_RELAY": True,
    "OUTBOX_POLL": 1.0,
}
"""Every key of ``TIDINGS`` and its default; ``GRIP`` has none (unset: no Pushpin).
What each key does: docs/settings.md."""


CheckFn: TypeAlias = Callable[[Any, str], "bool | Awaitable[bool]"]
Check: TypeAlias = "bool | str | CheckFn"

NAMED_CHECKS: dict[str, Callable[[Any], bool]] = {
    "authenticated": lambda user: bool(getattr(user, "is_authenticated", False)),
    "staff": lambda user: bool(getattr(user, "is_staff", False)),
    "superuser": lambda user: bool(getattr(user, "is_superuser", False)),
}


@dataclass(frozen=True)
class Rule:
    """Who may subscribe to / publish on the topics of ``pattern`` (see :mod:`tidings.registry`)."""

    pattern: Pattern
    subscribe: Check | None = None
    publish: Check | None = None


def rules_from_settings(raw: dict[str, dict[str, Any]]) -> tuple[Rule, ...]:
    """Parse ``TIDINGS["RULES"]``: ``{pattern: {"subscribe": check, "publish": check}}``."""
    rules = []
    for pattern, checks in raw.items():
        unknown = set(checks) - {"subscribe", "publish"}
        if unknown:
            raise ImproperlyConfigured(f"TIDINGS['RULES'][{pattern!r}]: unknown keys {unknown}")
        rules.append(
            Rule(
                Pattern(pattern),
                validate_check(checks.get("subscribe"), f"TIDINGS['RULES'][{pattern!r}]"),
                validate_check(checks.get("publish"), f"TIDINGS['RULES'][{pattern!r}]"),
            )
        )
    return tuple(rules)


def validate_check(check: Check | None, where: str) -> Check | None:
    """``check`` as a rule holds it; ``ImproperlyConfigured`` when it is none."""
    if check is None or isinstance(check, bool) or callable(check):
        return check
    if isinstance(check, str):
        if check in NAMED_CHECKS:
            return check
        try:
            fn: CheckFn = import_string(check)
        except ImportError:
            names = sorted(NAMED_CHECKS)
            raise ImproperlyConfigured(
                f"{where}: {check!r} is not one of {names} nor an importable callable"
            ) from None
        return fn
    raise ImproperlyConfigured(f"{where}: a check is a bool, a name, or a callable")


@dataclass(frozen=True)
class GripProxy:
    """One GRIP proxy (Pushpin) in front of this site: where to publish, how it signs.

    ``key`` verifies the ``Grip-Sig`` of the requests it forwards (HS256); ``iss``,
    when set, must be the token's issuer (Pushpin's ``sig_iss``).
    """

    control_uri: str
    key: bytes
    iss: str | None = None


@dataclass(frozen=True)
class Settings:
    """``TIDINGS`` as read and checked, over :data:`DEFAULTS`: one field per key, in
    lower case, but ``RATE_LIMIT`` is ``rate`` and ``burst``, ``HISTORY_SIZE`` and
    ``HISTORY_TTL`` are ``history``, and ``HISTORY`` is ``history_overrides``.
    :func:`get_settings` returns the one in force."""

    broker: str
    path: str
    allowed_origins: tuple[str, ...]
    max_frame_bytes: int
    max_subscriptions: int
    queue_size: int
    rate: float
    burst: int
    topic_max_length: int
    history: HistoryPolicy
    history_overrides: tuple[tuple[Pattern, HistoryPolicy], ...]
    rules: tuple[Rule, ...]
    coalesce: tuple[tuple[Pattern, str], ...]
    sse_keepalive: float
    sse_retry_ms: int
    poll_timeout: float
    poll_max_timeout: float
    presence_sync: float
    pg_listen: bool
    grip: tuple[GripProxy, ...] = ()
    max_depth: int = 32
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections_per_ip: int = 100
    max_connections_per_user: int = 100
    token_ttl: float = 3600.0
    drain_seconds: float = 5.0
    connect_rate: float = 500.0
    connect_burst: int = 1000
    metrics: bool = True
    tracing: bool = True
    metrics_token: str | None = None
    outbox_relay: bool = True
    outbox_poll: float = 1.0

    @property
    def ws_path(self) -> str:
        return self.path + "ws"


def _policy(value: Any, default: HistoryPolicy, where: str) -> HistoryPolicy:
    if not isinstance(value, dict) or set(value) - {"size", "ttl"}:
        raise ImproperlyConfigured(f"TIDINGS[{where!r}] must be a dict with 'size' and/or 'ttl'")
    return HistoryPolicy(
        size=int(value.get("size", default.size)), ttl=float(value.get("ttl", default.ttl))
    )


def _grip(value: Any) -> tuple[GripProxy, ...]:
    """``TIDINGS["GRIP"]``: one proxy's dict, or a list of them; ``None``/absent: off."""
    if value is None:
        return ()
    entries = value if isinstance(value, list | tuple) else [value]
    proxies = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"CONTROL_URI", "KEY", "ISS"}:
            raise ImproperlyConfigured(
                "TIDINGS['GRIP'] must be a dict (or a list of dicts) with 'CONTROL_URI', "
                "'KEY' and optionally 'ISS'"
            )
        uri, key, iss = entry.get("CONTROL_URI"), entry.get("KEY"), entry.get("ISS")
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            raise ImproperlyConfigured("TIDINGS['GRIP']['CONTROL_URI'] must be an http(s) URL")
        if not isinstance(key, str | bytes) or not key:
            raise ImproperlyConfigured(
                "TIDINGS['GRIP']['KEY'] is required: Pushpin's sig_key, to verify Grip-Sig"
            )
        if iss is not None and not isinstance(iss, str):
            raise ImproperlyConfigured("TIDINGS['GRIP']['ISS'] must be a string")
        raw = key.encode() if isinstance(key, str) else bytes(key)
        proxies.append(GripProxy(uri.rstrip("/"), raw, iss))
    return tuple(proxies)


def load() -> Settings:
    """Build :class:`Settings` from ``settings.TIDINGS`` over :data:`DEFAULTS`."""
    user = getattr(django_settings, "TIDINGS", {}) or {}
    unknown = set(user) - set(DEFAULTS) - {"GRIP"}
    if unknown:
        raise ImproperlyConfigured(f"Unknown TIDINGS settings: {', '.join(sorted(unknown))}")
    raw = {**DEFAULTS, **user}
    path = str(raw["PATH"])
    if not (path.startswith("/") and path.endswith("/")):
        raise ImproperlyConfigured("TIDINGS['PATH'] must start and end with '/'")
    rate = raw["RATE_LIMIT"]
    default_history = HistoryPolicy(int(raw["HISTORY_SIZE"]), float(raw["HISTORY_TTL"]))
    overrides = tuple(
        (Pattern(pattern), _policy(value, default_history, f"HISTORY][{pattern!r}"))
        for pattern, value in dict(raw["HISTORY"]).items()
    )
    return Settings(
        broker=str(raw["BROKER"]),
        path=path,
        allowed_origins=tuple(str(o).rstrip("/") for o in raw["ALLOWED_ORIGINS"]),
        max_frame_bytes=int(raw["MAX_FRAME_BYTES"]),
        max_subscriptions=int(raw["MAX_SUBSCRIPTIONS"]),
        queue_size=int(raw["QUEUE_SIZE"]),
        rate=float(rate["rate"]),
        burst=int(rate["burst"]),
        topic_max_length=int(raw["TOPIC_MAX_LENGTH"]),
        history=default_history,
        history_overrides=overrides,
        rules=rules_from_settings(dict(raw["RULES"])),
        coalesce=tuple((Pattern(p), str(field)) for p, field in dict(raw["COALESCE"]).items()),
        sse_keepalive=float(raw["SSE_KEEPALIVE"]),
        sse_retry_ms=int(raw["SSE_RETRY_MS"]),
        poll_timeout=float(raw["POLL_TIMEOUT"]),
        poll_max_timeout=float(raw["POLL_MAX_TIMEOUT"]),
        presence_sync=float(raw["PRESENCE_SYNC"]),
        pg_listen=bool(raw["PG_LISTEN"]),
        grip=_grip(raw.get("GRIP")),
        max_depth=int(raw["MAX_DEPTH"]),
        header_timeout=float(raw["HEADER_TIMEOUT"]),
        idle_timeout=float(raw["IDLE_TIMEOUT"]),
        max_connections_per_ip=int(raw["MAX_CONNECTIONS_PER_IP"]),
        max_connections_per_user=int(raw["MAX_CONNECTIONS_PER_USER"]),
        token_ttl=float(raw["TOKEN_TTL"]),
        drain_seconds=float(raw["DRAIN_SECONDS"]),
        connect_rate=float(dict(raw["CONNECT_RATE"])["rate"]),
        connect_burst=int(dict(raw["CONNECT_RATE"])["burst"]),
        metrics=bool(raw["METRICS"]),
        tracing=bool(raw["TRACING"]),
        metrics_token=_token(raw["METRICS_TOKEN"]),
        outbox_relay=bool(raw["OUTBOX_RELAY"]),
        outbox_poll=float(raw["OUTBOX_POLL"]),
    )


def _token(value: Any) -> str | None:
    """``TIDINGS["METRICS_TOKEN"]``: the bearer token a scrape from another host needs."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured("TIDINGS['METRICS_TOKEN'] must be a string")
    return value


@functools.cache
def get_settings() -> Settings:
    """The :class:`Settings` in force: read once, and again whenever ``TIDINGS``
    changes (``override_settings`` in tests); ``ImproperlyConfigured`` if invalid."""
    return load()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "TIDINGS":
        get_settings.cache_clear()
