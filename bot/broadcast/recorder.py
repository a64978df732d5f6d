"""Delivery results written by group commit: every result waits until it is in the database, and the
results that arrive while one transaction is being written go together into the next.

A delivery hands each result to `write` and waits for it before doing anything else: before its next part
goes out, and before it gives its place to another delivery. So a worker killed at any moment has at most
one unrecorded part per delivery it holds (the one in flight, or sent and being written), which is what a
kill can repeat, and at most as many as its concurrency. Waiting costs a delivery one commit per part,
well within the time platforms ask between two messages to one chat (Telegram: about a second); batching
what arrives meanwhile keeps it to a few transactions a second under load, not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from content.errors import Unavailable
from storage.deliveries import DeliveryLedger, Result

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
CLOSE_ATTEMPTS = 10


class Recorder:
    def __init__(self, ledger: DeliveryLedger, worker: str, lease_seconds: float) -> None:
        self._ledger = ledger
        self._worker = worker
        self._lease = lease_seconds
        self._waiting: list[Result] = []
        # Resolved when the transaction holding everything in _waiting commits.
        self._landed: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def write(self, result: Result) -> None:
        """Return once `result` is in the database. While the database cannot be reached this waits (the
        delivery stays where it got to; the worker's heartbeat keeps its lease)."""
        self._waiting.append(result)
        if self._landed is None:
            self._landed = asyncio.get_running_loop().create_future()
        landed = self._landed
        self._wake.set()
        # Shielded: a delivery cancelled while waiting must not cancel the batch it shares with others.
        await asyncio.shield(landed)

    async def run(self) -> None:
        """Write until `stop` (a task of the worker's lifetime), then call `close`."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self._stopping and not await self.flush():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_SECONDS)
                self._wake.set()

    def stop(self) -> None:
        """Make `run` return once its write in progress, if any, is done. Not a cancellation: a write
        cancelled halfway can leave SQLite's write lock with a connection that nobody will finish."""
        self._stopping = True
        self._wake.set()

    async def flush(self) -> bool:
        """Write what is waiting; False (and it stays waiting) when the database cannot be reached."""
        if not self._waiting:
            return True
        batch, self._waiting = self._waiting, []
        landed, self._landed = self._landed, None
        try:
            await self._ledger.record(self._worker, batch, self._lease)
        except (SQLAlchemyError, OSError, Unavailable) as error:
            log.warning(
                "recording %d delivery results failed (%s); retrying", len(batch), type(error).__name__
            )
            self._put_back(batch, landed)
            return False
        except asyncio.CancelledError:
            # The worker is stopping (it cancels `run`, then calls `close`): the batch is written by close.
            # If the write did commit, writing it again changes nothing (only rows still SENDING for us are
            # updated).
            self._put_back(batch, landed)
            raise
        if landed is not None:
            _release(landed)
        return True

    def _put_back(self, batch: list[Result], landed: asyncio.Future[None] | None) -> None:
        """A batch that was not written waits again, ahead of what came since; both sets of waiters are
        released by the next transaction that writes them."""
        self._waiting = batch + self._waiting
        if landed is None:
            return
        if self._landed is None:
            self._landed = landed
        else:
            self._landed.add_done_callback(lambda _: _release(landed))

    async def close(self) -> None:
        for _ in range(CLOSE_ATTEMPTS):
            if await self.flush():
                return
            await asyncio.sleep(RETRY_SECONDS)
        log.error("%d delivery results could not be recorded; they will be sent again", len(self._waiting))

    def waiting_ids(self) -> list[int]:
        """Deliveries whose result is not written yet: their leases must be kept alive too."""
        return [result.id for result in self._waiting]

    @property
    def waiting(self) -> int:
        return len(self._waiting)


def _release(landed: asyncio.Future[None]) -> None:
    if not landed.done():
        landed.set_result(None)
