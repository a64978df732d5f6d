"""Send rates shared by every worker: the generic cell rate algorithm (GCRA) with no burst.

Each rate is one row holding `tat`, the theoretical arrival time of the next send. Taking a slot is one
UPDATE that moves tat on by the interval and returns how long to wait for the slot it handed out, measured
on the database server's clock, so workers on several machines neither need synchronised clocks nor
talk to each other. Slots are evenly spaced (no burst), which is what a platform that counts sends in a
sliding window (Telegram: 30/s) needs: a burst allowance would spend a second's budget in a few
milliseconds. `hold` pushes tat forward, so one worker's 429 with retry_after pauses all of them.

Such a platform sees each send with some jitter (the event loop, the OS scheduler, the network), and at
exactly its rate any jitter puts one message too many in some window. So slots are spaced for HEADROOM
of the configured rate: at 30/s a message may then arrive ~40 ms out of step without a 429 (at 97%,
~30 ms, one 429 in 5,000 messages was seen on a quiet machine). A slot is turned into a deadline on
this machine's monotonic clock (the database reports it on its own clock; the offset is measured as NTP
does, not assumed), and a sender that wakes more than LATE_SECONDS after its slot (a busy event loop, a
stalled process) takes another slot instead of bunching up with the next.

PostgreSQL only; the embedded SQLite default runs one worker, which uses LocalRate: the same algorithm in
memory. (aiolimiter's leaky bucket is not used because it cannot be paused from outside and lets a full
bucket out at once.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from sqlalchemy import text

from storage.database import Database


class Rate(Protocol):
    async def acquire(self) -> None: ...

    async def hold(self, seconds: float) -> None: ...


# Slots are spaced for this share of the configured rate (see the module's docstring).
HEADROOM = 0.96
# A sender this late for its slot takes another one, at most LATE_RETRIES times.
LATE_SECONDS = 0.010
LATE_RETRIES = 3


class Unlimited:
    async def acquire(self) -> None:
        return None

    async def hold(self, seconds: float) -> None:
        return None


class LocalRate:
    """GCRA for one process."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / (per_second * HEADROOM)
        self._tat = 0.0

    async def acquire(self) -> None:
        for _ in range(LATE_RETRIES + 1):
            now = time.monotonic()
            slot = max(self._tat, now)
            self._tat = slot + self._interval
            if slot > now:
                await asyncio.sleep(slot - now)
            if time.monotonic() - slot <= LATE_SECONDS:
                return

    async def hold(self, seconds: float) -> None:
        self._tat = max(self._tat, time.monotonic() + seconds)


_TAKE = text(
    """
    UPDATE rate_limit SET tat = GREATEST(tat, clock_timestamp()) + make_interval(secs => :interval)
    WHERE name = :name
    RETURNING EXTRACT(EPOCH FROM tat - make_interval(secs => :interval))
    """
)
_NOW = text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
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
        self._interval = 1.0 / (per_second * HEADROOM)
        self._created = False
        self._clock = _ServerClock()
        # One take at a time per process: a batch of new deliveries would otherwise start dozens of
        # transactions at once, and that burst of work on the event loop makes the sends already due late.
        self._taking = asyncio.Lock()

    async def acquire(self) -> None:
        for _ in range(LATE_RETRIES + 1):
            slot = await self._take()
            wait = slot - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - slot <= LATE_SECONDS:
                return

    async def hold(self, seconds: float) -> None:
        await self._ensure_row()
        async with self._database.transaction() as connection:
            await connection.execute(_HOLD, {"name": self._name, "seconds": float(seconds)})

    async def _take(self) -> float:
        """The next slot, on time.monotonic()."""
        await self._ensure_row()
        async with self._taking, self._database.transaction() as connection:
            if self._clock.due():
                sent = time.monotonic()
                server = (await connection.execute(_NOW)).scalar_one()
                self._clock.add(sent, float(server), time.monotonic())
            slot = (
                await connection.execute(_TAKE, {"name": self._name, "interval": self._interval})
            ).scalar_one()
        return self._clock.local(float(slot))

    async def _ensure_row(self) -> None:
        if self._created:
            return
        async with self._database.transaction() as connection:
            await connection.execute(_CREATE, {"name": self._name})
        self._created = True


class _ServerClock:
    """The database server's clock on time.monotonic(): the offset measured by the probe with the shortest
    round trip among the last PROBES (NTP's rule: the error is at most half that round trip), so neither
    a slow answer nor a busy event loop shifts a slot, and no clocks need to be synchronised."""

    PROBES = 8
    EVERY_SECONDS = 2.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=self.PROBES)  # (round trip, offset)
        self._probed = -self.EVERY_SECONDS

    def due(self) -> bool:
        return time.monotonic() - self._probed >= self.EVERY_SECONDS

    def add(self, sent: float, server: float, received: float) -> None:
        self._samples.append((received - sent, server - (sent + received) / 2))
        self._probed = received

    def local(self, server_time: float) -> float:
        return server_time - min(self._samples)[1]
