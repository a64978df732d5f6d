"""Clicks on tracked links, written in batches off the redirect's path.

/r/{token} used to commit a transaction per click before it answered: after a broadcast, when thousands
of readers click at once, redirects queued behind the database (SQLite has one writer). Now the redirect
answers from a cached read and only notes the click here; a background task hands what was noted to
ClickStore.record in one transaction per FLUSH_SECONDS or MAX_WAITING clicks, whichever comes first, and
that transaction decides which clicks count (storage/clicks.py). The writer is bot/batch_writer.py, as for
bot/last_seen.py.

A crash loses at most that window of clicks; a database away for long loses the oldest beyond MAX_HELD,
counted in the log. The figures are then lower than the truth, never higher.

The clicker: a keyed hash (HMAC-SHA256) of the client's address and user agent, keyed by a key derived
from the secret key and the UTC day, so the address is never stored and a clicker cannot be followed from
one day to the next (storage/clicks.py says what that means for "unique"). Every worker process derives
the same key, so their clicks deduplicate together; the flip side is that whoever holds the secret key
can test a guessed (address, user agent) against a stored hash of any day.

A reader: with JIANBAO_TRACK_SUBSCRIBERS, a link in a subscriber's mail carries their signed reader id
(`?s=`, bot/tokens.py ReaderIds), and a click whose id verifies is noted with the subscriber's id
(storage/clicks.py decides whether it is theirs). Without the setting the buffer has no `readers` and
ignores any `s`, also one in a mail sent while the setting was on: nothing per subscriber is kept. A bad or
missing `s` is never an error: the click counts per link, by its hash, as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import web

from bot.batch_writer import BatchWriter
from bot.click_filter import classify
from bot.tokens import ReaderIds
from content.errors import JianbaoError
from storage.clicks import ClickEvent, ClickStore
from storage.tables import CLICKER_LENGTH

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_WAITING = 1_000
# Held in memory while the database is away; beyond it the oldest clicks are dropped.
MAX_HELD = 100_000


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clickers:
    """Names clickers: the keyed hash of (address, user agent) under the key of the UTC day."""

    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key.encode()
        self._day: dt.date | None = None
        self._key = b""

    def name(self, address: str | None, user_agent: str | None, at: dt.datetime) -> str:
        day = at.astimezone(dt.UTC).date()
        if day != self._day:
            message = b"jianbao clicker " + day.isoformat().encode()
            self._key, self._day = hmac.digest(self._secret, message, hashlib.sha256), day
        who = f"{address or ''}\n{user_agent or ''}".encode(errors="replace")
        return hmac.new(self._key, who, hashlib.sha256).hexdigest()[:CLICKER_LENGTH]


class ClickBuffer(BatchWriter):
    def __init__(
        self,
        store: ClickStore,
        secret_key: str,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        max_waiting: int = MAX_WAITING,
        max_held: int = MAX_HELD,
        clock: Callable[[], dt.datetime] = _utc_now,
        readers: ReaderIds | None = None,
    ) -> None:
        super().__init__(flush_seconds=flush_seconds, max_waiting=max_waiting)
        self.store = store  # the one whose link cache `set_url` must go through in this process
        self._clickers = Clickers(secret_key)
        self._readers = readers  # None: per-reader clicks are off
        self._clock = clock
        self._waiting: deque[ClickEvent] = deque(maxlen=max_held)
        self._dropped = 0

    def note(
        self,
        token: str,
        address: str | None,
        user_agent: str | None,
        method: str = "GET",
        *,
        reader: str | None = None,
    ) -> None:
        """A GET of /r/{token} (a stored link) from `address` with `user_agent`, now, with the link's
        reader id `reader` (its `s`) if it had one. Never waits."""
        now = self._clock()
        event = ClickEvent(
            token,
            now,
            self._clickers.name(address, user_agent, now),
            classify(user_agent, method),
            subscriber_id=self._readers.read(reader) if self._readers is not None else None,
        )
        if len(self._waiting) == self._waiting.maxlen:
            self._dropped += 1  # the deque drops the oldest
        self._waiting.append(event)
        self._noted(len(self._waiting))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def flush(self) -> bool:
        """Write what is waiting, MAX_WAITING at a time; False (the rest stays waiting) when the
        database cannot take it now."""
        self._log_drops()
        while self._waiting:
            batch = [self._waiting.popleft() for _ in range(min(self._max_waiting, len(self._waiting)))]
            try:
                await self.store.record(batch)
            except Exception as error:
                # Whatever the database layer raises, this background writer must go on: the clicks
                # wait for the next try.
                reason = error.message if isinstance(error, JianbaoError) else type(error).__qualname__
                log.warning("%d clicks not written yet (%s)", len(batch), reason)
                self._put_back(batch)
                return False
            except asyncio.CancelledError:
                self._put_back(batch)  # `close` writes them
                raise
        return True

    def _put_back(self, batch: list[ClickEvent]) -> None:
        room = (self._waiting.maxlen or 0) - len(self._waiting)
        for event in reversed(batch[-room:] if room > 0 else []):
            self._waiting.appendleft(event)
        self._dropped += max(0, len(batch) - max(room, 0))
        self._log_drops()

    def _log_drops(self) -> None:
        if self._dropped:
            log.warning("%d clicks dropped: more than %d were waiting", self._dropped, self._waiting.maxlen)
            self._dropped = 0

    async def close(self) -> None:
        if not await self.flush():
            log.error("%d clicks lost at shutdown", len(self._waiting))


CLICKS = web.AppKey("click_buffer", ClickBuffer)
