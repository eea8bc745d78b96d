"""JSON as tidings writes it: Django's encoder, so dates, decimals and UUIDs just work.

Kept out of :mod:`tidings.core` (which imports nothing of Django): data is encoded
once, where it enters tidings (``publish()``, a topic handler's result, a feed's rows,
a tracked member's info).

Strict, as client JSON is (:func:`tidings.core.protocol.loads`): ``NaN`` and
``Infinity`` are not JSON (a browser's ``JSON.parse`` refuses the whole frame), and a
string with an unpaired surrogate has no UTF-8 form (writing it to a socket fails).
Either is refused here, at the one publisher's call, instead of breaking the frame
of every subscriber.
"""

from __future__ import annotations

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

_ENCODER = DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_data(data: Any) -> str:
    """JSON text of ``data``: ``TypeError`` for what JSON cannot encode, ``ValueError``
    for ``NaN``/``Infinity`` and for strings with an unpaired surrogate."""
    text = _ENCODER.encode(data)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("The data holds a string with an unpaired surrogate.") from None
    return text
