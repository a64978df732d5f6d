"""A small in-memory cache whose entries expire and whose size is bounded (oldest entries go first).

Used for the replies already given (WeChat retries a push it got no answer to within 5 s) and for each
user's last search (for 更多). Both are per app and may be lost on restart: the worst case is a retry
processed twice, which the subscriber store tolerates (subscribe and unsubscribe are idempotent).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")


class TtlCache(Generic[Key, Value]):
    def __init__(self, *, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, Value]] = OrderedDict()

    def get(self, key: Key) -> Value | None:
        self._expire()
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def put(self, key: Key, value: Value) -> None:
        self._expire()
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self._ttl, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: Key) -> Value | None:
        entry = self._entries.pop(key, None)
        return entry[1] if entry else None

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def _expire(self) -> None:
        # Entries are in insertion order and share one TTL, so the expired ones are all at the front.
        now = self._clock()
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]
