"""A connection's allowance of frames: a token bucket, and when a flood is a flood."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum


class Verdict(Enum):
    SERVE = "serve"
    REFUSE = "refuse"  # answer ``rate_limited``; the frame is not processed
    CUT = "cut"  # a flood: close the connection (4008)


class Bucket:
    """``rate`` frames per second, ``burst`` at once. Past it a frame is refused; the
    refusals count until the client pauses long enough for the bucket to fill up
    again, and the one after ``burst`` of them cuts the connection. So a flood gets at
    most ``burst`` refusals however its frames and the refills interleave."""

    __slots__ = ("_clock", "_refilled", "_strikes", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._refilled = clock()
        self._strikes = 0

    def full(self) -> bool:
        """Has it filled up again (its client paused long enough)?"""
        now = self._clock()
        return self._tokens + (now - self._refilled) * self.rate >= self.burst

    def take(self) -> Verdict:
        """One frame arrived."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if tokens >= self.burst:
            self._strikes = 0  # it paused long enough: forgiven
        if tokens >= 1:
            self._tokens = tokens - 1
            return Verdict.SERVE
        self._tokens = tokens
        self._strikes += 1
        return Verdict.CUT if self._strikes > self.burst else Verdict.REFUSE


class Buckets:
    """One :class:`Bucket` per key (a client address, for requests that hold no
    connection to keep one in), at most ``limit`` of them: when full, the buckets that
    have filled up again (their clients paused) are forgotten, else the oldest."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], limit: int = 10_000
    ) -> None:
        self.rate, self.burst, self._clock, self.limit = rate, burst, clock, limit
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str) -> bool:
        """One request from ``key``: whether to serve it (a refusal never cuts: there
        is no connection to cut)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.limit:
                self._forget()
            bucket = self._buckets[key] = Bucket(self.rate, self.burst, self._clock)
        return bucket.take() is Verdict.SERVE

    def _forget(self) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.full():
                del self._buckets[key]
        while len(self._buckets) >= self.limit:  # nobody paused: the oldest go
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
