"""Client-side pacing: requests and tokens per minute, and how long to wait before a retry."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping

MAX_RETRY_AFTER_S = 300.0


class RateLimiter:
    """A token bucket refilled at `per_minute / 60` units per second, holding at most one second's worth.

    `acquire(amount)` waits until the bucket is not in debt, then takes `amount` (which may exceed the
    bucket, leaving it in debt), so a large request is never starved and the long-run rate is the limit.
    Waiters are served first come, first served.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait from `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def backoff_s(retry: int, base_s: float, max_s: float, headers: Mapping[str, str] | None = None) -> float:
    """Seconds before retry number `retry` (0-based): the server's Retry-After if it gave one (up to 5 minutes),
    else exponential backoff base * 2**retry capped at max_s, with jitter in [50%, 100%]."""
    server = retry_after_s(headers)
    if server is not None:
        return min(server, MAX_RETRY_AFTER_S)
    return min(max_s, base_s * 2.0**retry) * random.uniform(0.5, 1.0)
