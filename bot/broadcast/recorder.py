"""Delivery results written in batches: one transaction per FLUSH_SECONDS or BATCH results instead of
one per message, which is what lets the full path keep up with a bare send loop.

A result waiting here when the worker is killed is lost; its delivery is still SENDING in the ledger, so
it is sent again after the lease: that is the "in flight at the kill" window, at most FLUSH_SECONDS wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from content.errors import Unavailable
from storage.deliveries import DeliveryLedger, Result

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05
BATCH = 200
RETRY_SECONDS = 1.0


class Recorder:
    def __init__(self, ledger: DeliveryLedger, worker: str, lease_seconds: float) -> None:
        self._ledger = ledger
        self._worker = worker
        self._lease = lease_seconds
        self._waiting: list[Result] = []
        self._full = asyncio.Event()

    def add(self, result: Result) -> None:
        self._waiting.append(result)
        if len(self._waiting) >= BATCH:
            self._full.set()

    async def run(self) -> None:
        """Flush forever (a task of the worker's lifetime); cancel it, then call `close`."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), FLUSH_SECONDS)
            self._full.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_SECONDS)

    async def flush(self) -> bool:
        """Write what is waiting; False (and it stays waiting) when the database cannot be reached."""
        if not self._waiting:
            return True
        batch, self._waiting = self._waiting, []
        try:
            await self._ledger.record(self._worker, batch, self._lease)
        except (SQLAlchemyError, OSError, Unavailable) as error:
            log.warning(
                "recording %d delivery results failed (%s); retrying", len(batch), type(error).__name__
            )
            self._waiting = batch + self._waiting
            return False
        except asyncio.CancelledError:
            # The worker is stopping (it cancels `run`, then calls `close`): the batch is written by close.
            # Lost here, its deliveries would stay SENDING and be sent again after the lease. If the write
            # did commit, writing it again changes nothing (only rows still SENDING for us are updated).
            self._waiting = batch + self._waiting
            raise
        return True

    async def close(self) -> None:
        for _ in range(10):
            if await self.flush():
                return
            await asyncio.sleep(RETRY_SECONDS)
        log.error("%d delivery results could not be recorded; they will be sent again", len(self._waiting))

    def waiting_ids(self) -> list[int]:
        """Deliveries finished here but not written yet: their leases must be kept alive too."""
        return [result.id for result in self._waiting]

    @property
    def waiting(self) -> int:
        return len(self._waiting)
