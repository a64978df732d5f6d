"""When chat readers last wrote to us, written in batches off the reply path.

A WeChat reader's message opens a 48-hour window in which the account may message them (a broadcast
text); the worker reads `last_seen_at` to know whom it may reach. Writing it while the reader waits for
a keyword reply put a commit on every reply: after a broadcast, when hundreds of readers write at once,
replies queued behind the database. Here a reply only notes the time in memory; a background task writes
what was noted in one transaction per FLUSH_SECONDS or MAX_WAITING readers, whichever comes first.

A crash loses at most that window of times: the window computed from them then ends earlier than
WeChat's, so a broadcast text may skip a reader it could have reached, never the reverse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from bot.batch_writer import BatchWriter
from content.errors import JianbaoError
from storage.subscribers import SubscriberStore

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_WAITING = 500
# Held in memory while the database is away; beyond it the oldest notes are dropped (a reader's next
# message notes them again).
MAX_HELD = 100_000


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LastSeenBuffer(BatchWriter):
    def __init__(
        self,
        subscribers: SubscriberStore,
        channel: str,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        max_waiting: int = MAX_WAITING,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        super().__init__(flush_seconds=flush_seconds, max_waiting=max_waiting)
        self._subscribers = subscribers
        self._channel = channel
        self._clock = clock
        self._waiting: dict[str, dt.datetime] = {}

    def note(self, address: str) -> None:
        """`address` (already checked by the channel's rule) wrote to us now."""
        self._waiting[address] = self._clock()
        self._noted(len(self._waiting))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def flush(self) -> bool:
        """Write what is waiting; False (it stays waiting) when the database cannot take it now."""
        if not self._waiting:
            return True
        batch, self._waiting = self._waiting, {}
        try:
            await self._subscribers.seen_many(self._channel, batch)
        except Exception as error:
            # Whatever the database layer raises (a driver error, a closed database at shutdown), this
            # background writer must go on: the notes wait for the next try. Only the type is logged: a
            # driver's message may quote its parameters (openids).
            reason = error.message if isinstance(error, JianbaoError) else type(error).__qualname__
            log.warning("%s: %d last-seen times not written yet (%s)", self._channel, len(batch), reason)
            self._put_back(batch)
            return False
        except asyncio.CancelledError:
            self._put_back(batch)  # `close` writes them
            raise
        return True

    def _put_back(self, batch: dict[str, dt.datetime]) -> None:
        merged = batch | self._waiting  # newer notes win
        if len(merged) > MAX_HELD:
            merged = dict(list(merged.items())[-MAX_HELD:])
        self._waiting = merged

    async def close(self) -> None:
        if not await self.flush():
            log.error("%s: %d last-seen times lost at shutdown", self._channel, len(self._waiting))
