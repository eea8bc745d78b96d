"""How much visitors of the public demo may create: rooms and headlines need no login.

Without a cap anyone could fill the database with a loop of ``curl``. Each kind has a
per-client rate (``DEMO_NEW_PER_MINUTE`` per address per minute, counted in Django's
cache: one window of 60 seconds from the first creation) and a total
(``DEMO_MAX_NEW`` rows). A person clicking "new" never notices either; a script gets a
429 that says why. The cache is the default one (per process), which suits the demo's
one process; behind a proxy every visitor shares the proxy's address.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.http import HttpRequest

WINDOW = 60  # seconds
RETRY_AFTER = str(WINDOW)


def refusal(request: HttpRequest, model: type[models.Model], kind: str) -> str | None:
    """Why ``request`` may not create another ``kind`` (a ``model`` row) now; ``None``: it may."""
    total = settings.DEMO_MAX_NEW
    if model._default_manager.count() >= total:
        return f"The demo holds at most {total} {kind}s, and it is full: use one of them."
    key = f"demo-new:{kind}:{request.META.get('REMOTE_ADDR', '')}"
    cache.add(key, 0, timeout=WINDOW)
    try:
        made = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, made := 1, timeout=WINDOW)
    per_minute = settings.DEMO_NEW_PER_MINUTE
    if made > per_minute:
        return f"You may create {per_minute} {kind}s a minute; try again in a minute."
    return None
