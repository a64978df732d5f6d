"""Counting what one client does within a window, in bounded memory: failed admin logins today.

A client is its address as the socket sees it. Each key keeps the times of its recent events; a key whose
events have all left the window is forgotten. The number of keys is capped, and when the cap is reached
the key seen least recently goes first: an attacker with many addresses can make the memory forget its own
earlier addresses, never grow it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


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
        self._max_keys = max_keys
        self._clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

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
            self._events[key] = events
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        events.append(self._clock())
        self._events.move_to_end(key)

    def _recent(self, key: str) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        cutoff = self._clock() - self.window
        while events and events[0] <= cutoff:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events
