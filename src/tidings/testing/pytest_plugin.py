"""tidings' pytest fixtures; pytest loads this module by itself when tidings is
installed (the ``pytest11`` entry point). It imports nothing of Django until a fixture
is used, so it costs nothing in test suites that do not use it.

- ``tidings_published``: what this process publishes during the test
  (:func:`tidings.testing.capture`), with ``assert_published(topic, data=...)``.

The in-process clients need no fixture: ``async with tidings.testing.connect(user=...)``
in an async test (pytest-asyncio, or pytest-django's async support).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tidings.testing.recorder import Publishes


@pytest.fixture
def tidings_published() -> Iterator[Publishes]:
    """What this process publishes while the test runs (``mail.outbox`` for tidings)."""
    from tidings.testing.recorder import capture

    with capture() as published:
        yield published
