"""Counting what one client does within a window, in bounded memory: failed admin logins today.

A client is its address as the socket sees it. Each key keeps the times of its recent events; a key whose
events have all left the window is forgotten (a TTLCache entry whose time to live, renewed by every event,
is the window). The number of keys is capped, and when the cap is reached the key seen least recently goes
first: an attacker with many addresses can make the memory forget its own earlier addresses, never grow it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from cachetools import TTLCache


class WindowCounter:
    """At most `limit` events per key within `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a window counter needs a limit of 1 or more and a positive window")
        self.limit = limit
        self.window = window
        self._clock = clock
        # An entry lives `window` after its key's last event: exactly as long as that event counts.
        self._events: TTLCache[str, deque[float]] = TTLCache(maxsize=max_keys, ttl=window, timer=clock)

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may act again: 0 when it is under its limit now."""
        events = self._recent(key)
        if events is None or len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self._clock())

    def add(self, key: str) -> None:
        """Count one event of `key` now."""
        events = self._recent(key)
        if events is None:
            events = deque(maxlen=self.limit)
        events.append(self._clock())
        self._events[key] = events  # renews the entry's time to live and makes it the most recent

    def _recent(self, key: str) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        # The entry outlives its older events: drop those. (The last one is still in the window, or the
        # entry would have expired with it; `events` is checked anyway, against rounding.)
        cutoff = self._clock() - self.window
        while events and events[0] <= cutoff:
            events.popleft()
        if not events:
            self._events.pop(key, None)
            return None
        return events
