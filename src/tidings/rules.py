"""Who may subscribe to and publish on which topics.

A rule names a topic pattern and a check per action. A check is ``True``/``False``,
one of the strings ``"authenticated"``, ``"staff"``, ``"superuser"``, or a callable
``check(user, topic) -> bool`` (an ``async def`` is awaited; a plain function runs in
Django's sync thread, so it may use the ORM). Rules come from ``TIDINGS["RULES"]``
first, then from :func:`allow` calls, in order; for each action the first rule whose
pattern matches and that has a check for that action decides. Nothing matches: denied.

A topic handler (:mod:`tidings.handlers`) also lets clients publish on its pattern,
unless a rule says otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from tidings.core.topics import Pattern

Action = Literal["subscribe", "publish"]
CheckFn: TypeAlias = Callable[[Any, str], "bool | Awaitable[bool]"]
Check: TypeAlias = "bool | str | CheckFn"

_NAMED: dict[str, Callable[[Any], bool]] = {
    "authenticated": lambda user: bool(getattr(user, "is_authenticated", False)),
    "staff": lambda user: bool(getattr(user, "is_staff", False)),
    "superuser": lambda user: bool(getattr(user, "is_superuser", False)),
}


@dataclass(frozen=True)
class Rule:
    pattern: Pattern
    subscribe: Check | None = None
    publish: Check | None = None


def _validate(check: Check | None, where: str) -> Check | None:
    if check is None or isinstance(check, bool) or callable(check):
        return check
    if isinstance(check, str):
        if check in _NAMED:
            return check
        try:
            fn: CheckFn = import_string(check)
        except ImportError:
            raise ImproperlyConfigured(
                f"{where}: {check!r} is not one of {sorted(_NAMED)} nor an importable callable"
            ) from None
        return fn
    raise ImproperlyConfigured(f"{where}: a check is a bool, a name, or a callable")


_registered: list[Rule] = []
_found: dict[tuple[int, Action, str], Check | None] = {}  # find_check's answers


def allow(pattern: str, *, subscribe: Check | None = None, publish: Check | None = None) -> Rule:
    """Let users subscribe to / publish on topics matching ``pattern``.

    ``tidings.allow("rooms.*", subscribe=True, publish="authenticated")``
    """
    rule = Rule(
        Pattern(pattern),
        _validate(subscribe, f"allow({pattern!r}, subscribe=...)"),
        _validate(publish, f"allow({pattern!r}, publish=...)"),
    )
    _registered.append(rule)
    _found.clear()
    return rule


def clear() -> None:
    """Forget every rule registered with :func:`allow` (for tests)."""
    _registered.clear()
    _found.clear()


def from_settings(raw: dict[str, dict[str, Any]]) -> tuple[Rule, ...]:
    """Parse ``TIDINGS["RULES"]``: ``{pattern: {"subscribe": check, "publish": check}}``."""
    rules = []
    for pattern, checks in raw.items():
        unknown = set(checks) - {"subscribe", "publish"}
        if unknown:
            raise ImproperlyConfigured(f"TIDINGS['RULES'][{pattern!r}]: unknown keys {unknown}")
        rules.append(
            Rule(
                Pattern(pattern),
                _validate(checks.get("subscribe"), f"TIDINGS['RULES'][{pattern!r}]"),
                _validate(checks.get("publish"), f"TIDINGS['RULES'][{pattern!r}]"),
            )
        )
    return tuple(rules)


def find_check(settings_rules: tuple[Rule, ...], action: Action, topic: str) -> Check | None:
    """The check that decides ``action`` on ``topic``, or ``None`` if no rule speaks to it.

    Answers are remembered per topic (rules only change by :func:`allow`, which forgets
    them, or with the settings, which are another tuple).
    """
    key = (id(settings_rules), action, topic)
    try:
        return _found[key]
    except KeyError:
        pass
    found: Check | None = None
    for rule in (*settings_rules, *_registered):
        check: Check | None = rule.subscribe if action == "subscribe" else rule.publish
        if check is not None and rule.pattern.match(topic):
            found = check
            break
    if len(_found) >= 20_000:
        _found.clear()
    _found[key] = found
    return found


async def evaluate(check: Check, user: Any, topic: str) -> bool:
    """Run one check for ``user`` on ``topic``."""
    if isinstance(check, bool):
        return check
    if isinstance(check, str):
        return _NAMED[check](user)
    if inspect.iscoroutinefunction(check):
        return bool(await check(user, topic))
    result = await sync_to_async(check, thread_sensitive=True)(user, topic)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)
