"""JSON as tidings writes it: Django's encoder, so dates, decimals and UUIDs just work.

Kept out of :mod:`tidings.core` (which imports nothing of Django): data is encoded
once, where it enters tidings (``publish()``, a topic handler's result, a feed's rows).
"""

from __future__ import annotations

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

_ENCODER = DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_data(data: Any) -> str:
    """JSON text of ``data`` (``TypeError`` for what JSON cannot encode)."""
    return _ENCODER.encode(data)
