"""A background writer of what a hot path noted in memory: one transaction per `flush_seconds` or per
`max_waiting` notes, whichever comes first (bot/last_seen.py's reply times, bot/click_buffer.py's
clicks).

Subclasses keep their notes and write them in `flush` (False when the database cannot take them now:
they stay, and the next try comes after RETRY_SECONDS) and say in `close` what a last flush left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TypeVar

RETRY_SECONDS = 2.0


class BatchWriter(ABC):
    def __init__(self, *, flush_seconds: float, max_waiting: int) -> None:
        self._flush_seconds = flush_seconds
        self._max_waiting = max_waiting
        self._full = asyncio.Event()
        self._stopping = False

    def _noted(self, waiting: int) -> None:
        """After a note: wake the writer once `waiting` notes make a batch."""
        if waiting >= self._max_waiting:
            self._full.set()

    async def run(self) -> None:
        """Write until `stop` (a task of the app's lifetime), then call `close`."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._flush_seconds)
            self._full.clear()
            if not self._stopping and not await self.flush():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), RETRY_SECONDS)

    def stop(self) -> None:
        """Make `run` return once its write in progress, if any, is done. Not a cancellation: a write
        cancelled halfway can leave SQLite's write lock with a connection that nobody will finish."""
        self._stopping = True
        self._full.set()

    @abstractmethod
    async def flush(self) -> bool:
        """Write what is waiting; False (it stays waiting) when the database cannot take it now."""

    @abstractmethod
    async def close(self) -> None:
        """The last flush, at shutdown, saying what it could not write."""


W = TypeVar("W", bound=BatchWriter)


@contextlib.asynccontextmanager
async def buffering(writer: W) -> AsyncIterator[W]:
    """`writer` writing in the background while the block runs, and what is left written on leaving."""
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        writer.stop()
        await task
        await writer.close()
