"""Send rates shared by every worker: the generic cell rate algorithm (GCRA) with no burst.

Each rate is one row holding `tat`, the theoretical arrival time of the next send. Taking a slot is one
UPDATE that moves tat on by the interval and returns how long to wait for the slot it handed out, measured
on the database server's clock, so workers on several machines neither need synchronised clocks nor
talk to each other. Slots are evenly spaced (no burst), which is what a platform that counts sends in a
sliding window (Telegram: 30/s) needs: a burst allowance would spend a second's budget in a few
milliseconds. `hold` pushes tat forward, so one worker's 429 with retry_after pauses all of them.

PostgreSQL only; the embedded SQLite default runs one worker, which uses LocalRate: the same algorithm in
memory. (aiolimiter's leaky bucket is not used because it cannot be paused from outside and lets a full
bucket out at once.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from sqlalchemy import text

from storage.database import Database


class Rate(Protocol):
    async def acquire(self) -> None: ...

    async def hold(self, seconds: float) -> None: ...


class Unlimited:
    async def acquire(self) -> None:
        return None

    async def hold(self, seconds: float) -> None:
        return None


class LocalRate:
    """GCRA for one process."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._tat = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._tat, now)
        self._tat = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def hold(self, seconds: float) -> None:
        self._tat = max(self._tat, time.monotonic() + seconds)


_TAKE = text(
    """
    UPDATE rate_limit SET tat = GREATEST(tat, clock_timestamp()) + make_interval(secs => :interval)
    WHERE name = :name
    RETURNING EXTRACT(EPOCH FROM (tat - make_interval(secs => :interval) - clock_timestamp()))
    """
)
_CREATE = text(
    "INSERT INTO rate_limit (name, tat) VALUES (:name, clock_timestamp()) ON CONFLICT (name) DO NOTHING"
)
_HOLD = text(
    """
    UPDATE rate_limit SET tat = GREATEST(tat, clock_timestamp() + make_interval(secs => :seconds))
    WHERE name = :name
    """
)


class SharedRate:
    """GCRA in PostgreSQL: one row of `rate_limit` per named rate."""

    def __init__(self, database: Database, name: str, per_second: float) -> None:
        if database.backend != "postgresql":
            raise ValueError("a shared rate needs PostgreSQL; use LocalRate with SQLite")
        self._database = database
        self._name = name
        self._interval = 1.0 / per_second
        self._created = False

    async def acquire(self) -> None:
        wait = await self._take()
        if wait > 0:
            await asyncio.sleep(wait)

    async def hold(self, seconds: float) -> None:
        await self._ensure_row()
        async with self._database.transaction() as connection:
            await connection.execute(_HOLD, {"name": self._name, "seconds": float(seconds)})

    async def _take(self) -> float:
        await self._ensure_row()
        async with self._database.transaction() as connection:
            wait = (
                await connection.execute(_TAKE, {"name": self._name, "interval": self._interval})
            ).scalar_one()
        return float(wait)

    async def _ensure_row(self) -> None:
        if self._created:
            return
        async with self._database.transaction() as connection:
            await connection.execute(_CREATE, {"name": self._name})
        self._created = True
