"""Topic names and topic patterns.

A topic is 1 to ``TOPIC_MAX_LENGTH`` characters from ``A-Z a-z 0-9 _ - . : @ = +``.
A pattern is a topic in which ``*`` matches any run of those characters (dots
included), so ``"rooms.*"`` matches ``"rooms.lobby"`` and ``"rooms.a.b"``.
"""

from __future__ import annotations

import re

RESERVED = "tidings."  # topics and event names of tidings' own
_TOPIC_CHARS = r"A-Za-z0-9_\-.:@=+"
_TOPIC = re.compile(rf"[{_TOPIC_CHARS}]+")
_EVENT = re.compile(rf"[{_TOPIC_CHARS}]{{1,64}}")
_PATTERN = re.compile(rf"[{_TOPIC_CHARS}*]+")


def topic_error(topic: object, max_length: int) -> str | None:
    """Why ``topic`` is not a valid topic name, or ``None`` when it is."""
    if not isinstance(topic, str) or not topic:
        return "A topic must be a non-empty string."
    if len(topic) > max_length:
        return f"A topic may have at most {max_length} characters."
    if not _TOPIC.fullmatch(topic):
        return "A topic may only contain A-Z a-z 0-9 and _ - . : @ = +"
    if topic.startswith(RESERVED):
        return f"Topics starting with {RESERVED!r} are reserved."
    return None


def event_error(event: object) -> str | None:
    """Why ``event`` is not a valid event name, or ``None`` when it is."""
    if not isinstance(event, str) or not _EVENT.fullmatch(event):
        return "An event name is 1 to 64 characters from A-Z a-z 0-9 and _ - . : @ = +"
    if event.startswith(RESERVED):
        return "Event names starting with 'tidings.' are reserved."
    return None


class Pattern:
    """A compiled topic pattern; ``*`` matches any run of topic characters."""

    __slots__ = ("_regex", "text")

    def __init__(self, text: str) -> None:
        if not _PATTERN.fullmatch(text):
            raise ValueError(f"{text!r} is not a topic pattern")
        self.text = text
        parts = (re.escape(p) for p in text.split("*"))
        self._regex = re.compile(f"[{_TOPIC_CHARS}]*".join(parts))

    def match(self, topic: str) -> bool:
        return self._regex.fullmatch(topic) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"
