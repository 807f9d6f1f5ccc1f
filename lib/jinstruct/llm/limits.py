"""Client-side pacing: requests and tokens per minute, and how long to wait before a retry."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping

from aiolimiter import AsyncLimiter

class RateLimiter:
    """A per-minute limit (requests, or tokens) as aiolimiter's leaky bucket holding one second's worth (at least
    one unit), so the pace is smooth rather than a burst at the top of each minute. An `amount` above the bucket
    (one very long prompt against a tokens-per-minute limit) is paid in bucket-sized parts before it goes, so the
    long-run rate never exceeds the limit."""

    def __init__(self, per_minute: float):
        capacity = max(per_minute / 60.0, 1.0)
        self.limiter = AsyncLimiter(capacity, time_period=capacity * 60.0 / per_minute)

    async def acquire(self, amount: float = 1.0) -> None:
        while amount > 0:
            part = min(amount, self.limiter.max_rate)
            await self.limiter.acquire(part)
            amount -= part


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


class RetryAfterTooLong(Exception):
    """The server asked for a longer wait than the client's `backoff_max_s`: the call gives up instead of stalling."""

    def __init__(self, wait_s: float, header: str, max_s: float):
        super().__init__(f"the server asked to retry after {header} (about {wait_s:,.0f} s), more than backoff_max_s="
                         f"{max_s:g} s: gave up on this request (raise backoff_max_s to wait that long)")
        self.wait_s = wait_s


def _retry_after_header(headers: Mapping[str, str]) -> str:
    for name in ("retry-after-ms", "retry-after"):
        if headers.get(name) is not None:
            return f"'{name}: {headers[name]}'"
    return "''"


def backoff_s(retry: int, base_s: float, max_s: float, headers: Mapping[str, str] | None = None) -> float:
    """Seconds before retry number `retry` (0-based): the server's Retry-After if it gave one, else exponential
    backoff base * 2**retry capped at max_s, with jitter in [50%, 100%]. A Retry-After above max_s raises
    RetryAfterTooLong, which quotes the server's value: a run never sleeps longer than max_s between tries."""
    server = retry_after_s(headers)
    if server is not None:
        if server > max_s:
            assert headers is not None
            raise RetryAfterTooLong(server, _retry_after_header(headers), max_s)
        return server
    return min(max_s, base_s * 2.0**retry) * random.uniform(0.5, 1.0)
