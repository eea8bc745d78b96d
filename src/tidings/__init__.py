"""tidings: realtime for Django.

    import tidings
    tidings.publish("rooms.lobby", {"text": "hi"})           # from sync code
    await tidings.apublish("rooms.lobby", {"text": "hi"})    # from async code
    tidings.allow("rooms.*", subscribe=True, publish="authenticated")
    tidings.disconnect(user, reason="banned")                 # end a user's connections
    tidings.token(user, ttl=600)                              # for another origin, an app

    @tidings.handler("rooms.*")
    def on_message(msg: tidings.ClientMessage): ...

Names are imported lazily, so ``INSTALLED_APPS = [..., "tidings"]`` imports nothing
that needs settings before Django is set up. ``tidings.__version__`` is the installed
distribution's version (pyproject.toml's ``version``, read once, on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from tidings.api import adisconnect, aposition, apublish, disconnect, publish
    from tidings.core.messages import Message, Position
    from tidings.exceptions import Reject
    from tidings.feeds import ModelFeed, feed
    from tidings.holds import hold_longpoll, hold_stream, hold_websocket, is_websocket
    from tidings.registry import ClientMessage, allow, handler, track
    from tidings.tokens import token

__all__ = [
    "ClientMessage",
    "Message",
    "ModelFeed",
    "Position",
    "Reject",
    "adisconnect",
    "allow",
    "aposition",
    "apublish",
    "disconnect",
    "feed",
    "handler",
    "hold_longpoll",
    "hold_stream",
    "hold_websocket",
    "is_websocket",
    "publish",
    "token",
    "track",
]

_WHERE = {
    "publish": "tidings.api",
    "apublish": "tidings.api",
    "aposition": "tidings.api",
    "disconnect": "tidings.api",
    "adisconnect": "tidings.api",
    "hold_stream": "tidings.holds",
    "hold_longpoll": "tidings.holds",
    "hold_websocket": "tidings.holds",
    "is_websocket": "tidings.holds",
    "allow": "tidings.registry",
    "handler": "tidings.registry",
    "ClientMessage": "tidings.registry",
    "Reject": "tidings.exceptions",
    "Message": "tidings.core.messages",
    "Position": "tidings.core.messages",
    "track": "tidings.registry",
    "ModelFeed": "tidings.feeds",
    "feed": "tidings.feeds",
    "token": "tidings.tokens",
}


def _version() -> str:
    """The installed distribution's version; in a checkout that is not installed, its
    pyproject.toml's; ``0+unknown`` when neither says."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tidings")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as f:
            project = tomllib.load(f)["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"
    if project.get("name") != "tidings" or "version" not in project:
        return "0+unknown"
    return str(project["version"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = found = _version()
        return found
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
