"""Counts that many watchers share: one count per key every `fresh_seconds` in this process, however many
editors are looking.

The console's progress panel is polled every few seconds by every editor watching a broadcast, and its
count (BroadcastStore.progress) reads all of the broadcast's rows: at 1,000,000 deliveries on PostgreSQL,
2 cores, about 170 ms of both cores (a parallel scan; an index-only scan on ix_delivery_claim, even with
the visibility map all set, is no cheaper: it is the whole index). The broadcast form's audience
(BroadcastStore.count_audience) is a scan of the subscribers, about 200 ms. Run per request, ten
watchers queue behind one another (p95 well over a second) and take the cores from the WeChat replies.
So a `Snapshots` keeps the last count of each key:

- fresh (younger than `fresh_seconds`): callers get it without touching the database;
- stale (younger than `stale_seconds`): the caller still gets it at once, and one count starts in the
  background for the callers after it: a polling page never waits for a count, only a first look does;
- older, or never counted: the caller waits for the count;
- single flight: while a key's count runs, nobody starts another; whoever must wait waits for that one.

A watched broadcast thus costs one scan per `fresh_seconds` per process whatever the number of watchers,
and nothing once nobody looks. Measured (scripts/bench_console.py, 1,000,000 rows, 2 shared cores): 10
watchers polling every 0.5 s through one `Snapshots` got p95 under 1 ms from 10 counts in 20 s, where
a count each gave them a p95 over a second; WeChat keyword replies kept their p99 meanwhile.

The state is per instance (no module globals): the application's composition root makes one of each
per process, `ProgressSnapshots(BroadcastStore(database))` and `AudienceSnapshots()`, hands them to the
console's pages (`progress(broadcast_id)`, `audience(control, date, channels, wechat_text=...)`) and
closes them on shutdown, which cancels counts in flight. `StatsSnapshots(BroadcastStats(database))` shares
a broadcast's figures (storage/broadcast_stats.py) the same way while it runs; once it is finished they are
a few kept rows, and sharing them only saves those reads. A count that fails reaches the callers waiting
for it; in the background it is logged, and the next caller tries again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from bot.broadcast.control import BroadcastControl
from storage.broadcast_stats import BroadcastStats, Tally
from storage.broadcasts import BroadcastStore, Progress

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Progress is polled every few seconds: a count at most every 2 s, shown for up to 30 s while the next
# one runs (past that, a slow database is better waited for than hidden).
PROGRESS_FRESH_SECONDS = 2.0
PROGRESS_STALE_SECONDS = 30.0
# An audience changes as people join and leave, which an editor choosing channels need not see to the
# second.
AUDIENCE_FRESH_SECONDS = 10.0
AUDIENCE_STALE_SECONDS = 120.0
# Keys kept: broadcasts being watched, or the audiences of the channel choices on the forms open.
DEFAULT_KEYS = 256


@dataclass
class _Entry(Generic[V]):
    last: tuple[V, float] | None = None  # the last count, and when it started
    running: asyncio.Task[V] | None = None


class Snapshots(Generic[K, V]):
    def __init__(
        self,
        *,
        fresh_seconds: float,
        stale_seconds: float,
        keys: int = DEFAULT_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fresh_seconds` <= `stale_seconds`; `keys`: how many keys are kept (the least recently
        counted, not being counted, go first); `clock`: monotonic seconds."""
        if not 0 <= fresh_seconds <= stale_seconds:
            raise ValueError("want 0 <= fresh_seconds <= stale_seconds")
        self._fresh = fresh_seconds
        self._stale = stale_seconds
        self._keys = max(1, keys)
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}

    async def get(self, key: K, count: Callable[[], Awaitable[V]]) -> V:
        """The count of `key`, as described in the module's docstring; `count()` makes a new one."""
        entry = self._entries.get(key)
        if entry is None:
            self._make_room()
            entry = self._entries[key] = _Entry()
        if entry.last is not None:
            value, taken = entry.last
            age = self._clock() - taken
            if age < self._fresh:
                return value
            if age < self._stale:
                if entry.running is None:
                    self._start(entry, count)
                return value
        running = entry.running if entry.running is not None else self._start(entry, count)
        # Shielded: a caller that goes away (a closed page) does not cancel the count the others wait for.
        return await asyncio.shield(running)

    def forget(self, key: K) -> None:
        """The next caller of `key` waits for a count that starts after this call (say, once the state
        it shows has changed); a count already running finishes for its own waiters only."""
        self._entries.pop(key, None)

    async def close(self) -> None:
        """Cancel the counts in flight and forget every key."""
        running = [entry.running for entry in self._entries.values() if entry.running is not None]
        self._entries.clear()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _start(self, entry: _Entry[V], count: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = asyncio.create_task(self._count(entry, count, self._clock()))
        task.add_done_callback(_log_failure)
        entry.running = task
        return task

    async def _count(self, entry: _Entry[V], count: Callable[[], Awaitable[V]], started: float) -> V:
        try:
            value = await count()
        finally:
            entry.running = None
        entry.last = (value, started)
        return value

    def _make_room(self) -> None:
        idle = [key for key, entry in self._entries.items() if entry.running is None]
        idle.sort(key=lambda key: _taken(self._entries[key]))
        for key in idle[: max(0, len(self._entries) - self._keys + 1)]:
            del self._entries[key]


def _taken(entry: _Entry[V]) -> float:
    return float("-inf") if entry.last is None else entry.last[1]


def _log_failure(task: asyncio.Task[object]) -> None:
    # Retrieved here, so that a count that failed in the background (nobody waiting) is logged once
    # instead of asyncio's "exception was never retrieved".
    if not task.cancelled() and task.exception() is not None:
        log.warning("a shared count failed: %s", task.exception())


class ProgressSnapshots:
    """The progress of broadcasts as every watcher of this process shares it (`Snapshots` by broadcast
    id over BroadcastStore.progress)."""

    def __init__(
        self,
        broadcasts: BroadcastStore,
        *,
        fresh_seconds: float = PROGRESS_FRESH_SECONDS,
        stale_seconds: float = PROGRESS_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broadcasts = broadcasts
        self._snapshots: Snapshots[int, Progress] = Snapshots(
            fresh_seconds=fresh_seconds, stale_seconds=stale_seconds, clock=clock
        )

    async def progress(self, broadcast_id: int) -> Progress:
        return await self._snapshots.get(broadcast_id, partial(self._broadcasts.progress, broadcast_id))

    def forget(self, broadcast_id: int) -> None:
        self._snapshots.forget(broadcast_id)

    async def close(self) -> None:
        await self._snapshots.close()


class StatsSnapshots:
    """The figures of broadcasts (storage/broadcast_stats.py BroadcastStats.tally) as every watcher of
    this process shares them, by broadcast id; as fresh as progress."""

    def __init__(
        self,
        stats: BroadcastStats,
        *,
        fresh_seconds: float = PROGRESS_FRESH_SECONDS,
        stale_seconds: float = PROGRESS_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self._snapshots: Snapshots[int, Tally] = Snapshots(
            fresh_seconds=fresh_seconds, stale_seconds=stale_seconds, clock=clock
        )

    async def tally(self, broadcast_id: int) -> Tally:
        return await self._snapshots.get(broadcast_id, partial(self.stats.tally, broadcast_id))

    def forget(self, broadcast_id: int) -> None:
        self._snapshots.forget(broadcast_id)

    async def close(self) -> None:
        await self._snapshots.close()


class AudienceSnapshots:
    """The audiences of the broadcast form as every editor of this process shares them (`Snapshots` by
    issue, channels and options over BroadcastControl.audience)."""

    def __init__(
        self,
        *,
        fresh_seconds: float = AUDIENCE_FRESH_SECONDS,
        stale_seconds: float = AUDIENCE_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshots: Snapshots[tuple[dt.date, tuple[str, ...], bool], dict[str, dict[str, int]]] = (
            Snapshots(fresh_seconds=fresh_seconds, stale_seconds=stale_seconds, clock=clock)
        )

    async def audience(
        self, control: BroadcastControl, date: dt.date, channels: Sequence[str], *, wechat_text: bool = False
    ) -> dict[str, dict[str, int]]:
        """BroadcastControl.audience's answer, shared."""
        chosen = tuple(channels)
        count = partial(control.audience, date, chosen, wechat_text=wechat_text)
        return await self._snapshots.get((date, chosen, wechat_text), count)

    async def close(self) -> None:
        await self._snapshots.close()
