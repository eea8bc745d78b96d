"""What your code declares about topics, and one lookup of it per topic.

    tidings.allow("rooms.*", subscribe=True, publish="authenticated")   # who may do what
    @tidings.handler("rooms.*")                                         # client publishes
    def on_message(msg: tidings.ClientMessage): ...
    tidings.track("rooms.*", member=lambda user, topic: ...)            # presence
    tidings.feed(RoomFeed)                                              # model change feeds

Each is a pattern (``*`` matches any run of topic characters, dots included) with what
it declares. :func:`lookup` resolves all of them for one topic at once, together with
the settings that depend on the topic (history, coalescing), and remembers the answer:
one cache, bounded, forgotten whenever a declaration or the settings change.

**Rules.** A check is ``True``/``False``, one of ``"authenticated"``, ``"staff"``,
``"superuser"``, a dotted path to a callable (in settings), or a callable
``check(user, topic) -> bool`` (an ``async def`` is awaited; a plain function runs in
Django's sync thread, so it may use the ORM). For each action, the first rule whose
pattern matches and that has a check for that action decides: ``TIDINGS["RULES"]``
first, then :func:`allow` calls in order. Where no rule speaks, a topic handler lets
clients publish, and a model feed's ``can_subscribe`` decides who may subscribe to its
topics; otherwise the answer is no.

**Handlers** receive what clients publish (Phoenix's ``handle_in``). A plain function
runs in Django's sync thread; an ``async def`` on the event loop. Its return value is
broadcast (``None``: nothing is); raising :class:`~tidings.exceptions.Reject` answers
the client ``rejected`` with your message; any other exception answers
``internal_error`` and is logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from asgiref.sync import sync_to_async

from tidings.conf import NAMED_CHECKS, Check, Rule, Settings, validate_check
from tidings.core.messages import HistoryPolicy, Message
from tidings.core.topics import RESERVED, Pattern
from tidings.exceptions import Reject

__all__ = ["ClientMessage", "Reject", "allow", "feed_for", "handler", "lookup", "track"]

Action = Literal["subscribe", "publish"]
Member: TypeAlias = Callable[
    [Any, str], "tuple[str, dict[str, Any]] | Awaitable[tuple[str, dict[str, Any]] | None] | None"
]


@dataclass(frozen=True)
class ClientMessage:
    """A client's publish, as a handler sees it."""

    user: Any
    topic: str
    event: str
    data: Any
    connection_id: str


Handler: TypeAlias = Callable[[ClientMessage], "Any | Awaitable[Any]"]


@dataclass(frozen=True)
class Tracked:
    """Presence on a pattern: ``member(user, topic)`` says who a user is there."""

    pattern: Pattern
    member: Member
    counts_only: bool = False

    async def member_of(self, user: Any, topic: str) -> tuple[str, dict[str, Any]] | None:
        found = self.member(user, topic)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            return None
        key, info = found
        return str(key), dict(info)


class Feed(Protocol):
    """What tidings needs of a model feed (:class:`tidings.Feed`)."""

    @property
    def filters(self) -> bool:
        """Does ``visible`` hide rows from some users?"""

    @property
    def by_triggers(self) -> bool:
        """Do PostgreSQL triggers report its changes (:mod:`tidings.pgfeed`)?"""

    @property
    def model(self) -> Any:
        """The Django model whose changes it publishes."""

    def covers(self, topic: str) -> bool: ...
    def can_subscribe(self, user: Any, topic: str) -> bool: ...
    def visible(self, user: Any, row: dict[str, Any]) -> bool: ...
    def shown(self, user: Any, message: Message) -> Message | None:
        """A change as ``user`` may see it: itself, a removal of the row, or ``None``."""

    async def asnapshot(self, user: Any, topic: str) -> list[dict[str, Any]]: ...
    async def apublish(
        self, action: str, obj: Any, changed: list[str], replaced: dict[str, Any] | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """Everything declared about one topic (see :func:`lookup`)."""

    subscribe: Check | None  # None: nobody may
    publish: Check | None
    handler: Handler | None
    tracked: Tracked | None
    feed: Feed | None
    history: HistoryPolicy
    coalesce: str | None  # the data field that keys its messages for coalescing


# -- declaring ------------------------------------------------------------------------
_rules: list[Rule] = []
_handlers: list[tuple[Pattern, Handler]] = []
_tracked: list[Tracked] = []
_feeds: list[Feed] = []


def allow(pattern: str, *, subscribe: Check | None = None, publish: Check | None = None) -> Rule:
    """Let users subscribe to / publish on topics matching ``pattern``.

    ``tidings.allow("rooms.*", subscribe=True, publish="authenticated")``
    """
    rule = Rule(
        Pattern(pattern),
        validate_check(subscribe, f"allow({pattern!r}, subscribe=...)"),
        validate_check(publish, f"allow({pattern!r}, publish=...)"),
    )
    _rules.append(rule)
    _forget()
    return rule


def handler(pattern: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for client publishes on topics matching ``pattern``."""

    def register(fn: Handler) -> Handler:
        _handlers.append((Pattern(pattern), fn))
        _forget()
        return fn

    return register


def track(pattern: str, *, member: Member, counts_only: bool = False) -> Tracked:
    """Enable presence on topics matching ``pattern``.

    ``member(user, topic)`` returns who the user is there, as ``(key, info)``: several
    connections of one key are one member, and ``info`` is what others see of them.
    Return ``None`` to leave a user untracked (they may still watch).
    ``counts_only=True`` shows counts instead of members: for large rooms.
    """
    tracked = Tracked(Pattern(pattern), member, counts_only)
    _tracked.append(tracked)
    _forget()
    return tracked


def add_feed(feed: Feed) -> None:
    """Register a model feed's topics (:func:`tidings.feed` calls this)."""
    _feeds.append(feed)
    _forget()


def feeds() -> list[Feed]:
    return list(_feeds)


def clear() -> None:
    """Forget every declaration (for tests)."""
    for registered in (_rules, _handlers, _tracked, _feeds):
        registered.clear()
    _forget()


# -- looking up -----------------------------------------------------------------------
CACHE_SIZE = 10_000
_cache: dict[str, TopicInfo] = {}
_cached_for: list[Settings | None] = [None]


def _forget() -> None:
    _cache.clear()


def lookup(topic: str, settings: Settings) -> TopicInfo:
    """Everything declared about ``topic`` under ``settings``, remembered.

    The cache keeps the ``CACHE_SIZE`` topics looked up last (the oldest goes first);
    it is forgotten when a declaration is added or the settings object changes.
    """
    info = _cache.get(topic)
    if info is not None and _cached_for[0] is settings:
        return info
    if _cached_for[0] is not settings:
        _cache.clear()
        _cached_for[0] = settings
        info = None
    if info is None:
        info = _resolve(topic, settings)
        if len(_cache) >= CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[topic] = info
    return info


def feed_for(topic: str) -> Feed | None:
    """The feed whose topics ``topic`` is one of."""
    return next((f for f in _feeds if f.covers(topic)), None)


def _speaks(check: Check | None, rule: Rule, topic: str) -> bool:
    return check is not None and rule.pattern.match(topic)


# The admin panel's topics (tidings.panel): staff only, whatever rule of the project
# would say; nobody publishes snapshots but the server.
PANEL_RULES = (
    Rule(Pattern("tidings-panel"), "staff", False),
    Rule(Pattern("tidings-panel.ask"), False, "staff"),
)


def _resolve(topic: str, settings: Settings) -> TopicInfo:
    rules = (*PANEL_RULES, *settings.rules, *_rules)
    subscribe = next(
        (r.subscribe for r in rules if r.subscribe is not None and r.pattern.match(topic)), None
    )
    publish = next(
        (r.publish for r in rules if r.publish is not None and r.pattern.match(topic)), None
    )
    handler = next((fn for pattern, fn in _handlers if pattern.match(topic)), None)
    feed = feed_for(topic)
    if subscribe is None and feed is not None:
        subscribe = feed.can_subscribe
    if publish is None and handler is not None:
        publish = True
    if topic.startswith(RESERVED):  # tidings' own topics (presence diffs) keep no history
        history = HistoryPolicy(0, 0)
    else:
        history = next(
            (p for pattern, p in settings.history_overrides if pattern.match(topic)),
            settings.history,
        )
    return TopicInfo(
        subscribe=subscribe,
        publish=publish,
        handler=handler,
        tracked=next((t for t in _tracked if t.pattern.match(topic)), None),
        feed=feed,
        history=history,
        coalesce=next((f for pattern, f in settings.coalesce if pattern.match(topic)), None),
    )


# -- deciding -------------------------------------------------------------------------
async def may(user: Any, action: Action, info: TopicInfo, topic: str) -> bool:
    """Does what is declared about ``topic`` let ``user`` do ``action``?"""
    check = info.subscribe if action == "subscribe" else info.publish
    if check is None or check is False:
        return False
    if check is True:
        return True
    if isinstance(check, str):
        return NAMED_CHECKS[check](user)
    if inspect.iscoroutinefunction(check):
        return bool(await check(user, topic))
    result = await sync_to_async(check, thread_sensitive=True)(user, topic)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def run_handler(fn: Handler, message: ClientMessage) -> Any:
    """Run a topic handler: on the loop if it is async, else in Django's sync thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(message)
    return await sync_to_async(fn, thread_sensitive=True)(message)
