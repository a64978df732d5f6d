"""The tracking links of sent issues: token -> original URL, and how often each was clicked.

channels/links.py makes the tokens (an HMAC of channel, issue date and URL) when it renders an issue with
click tracking on; whoever sends or shows that rendering (a broadcast, the archive page) remembers its
links here. /r/{token} redirects only to a URL remembered under that token, so the redirect can never be
pointed anywhere else (no open redirect).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from content.errors import BadInput
from storage.database import Database
from storage.tables import NAME_LENGTH, LinkRow, core_table

# channels/links.py makes 16 characters of lowercase base32; anything unlike that is not looked up at all.
_TOKEN = re.compile(r"[a-z2-7]{8,32}")
_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class TrackedLink:
    token: str
    channel: str
    issue_date: dt.date
    url: str
    clicks: int


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkStore:
    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._database = database
        self._clock = clock

    async def remember(self, channel: str, issue_date: dt.date, links: Iterable[tuple[str, str]]) -> None:
        """Store (token, original URL) pairs of one issue on one channel. Idempotent: a token already
        stored keeps its URL and its clicks (the same token always stands for the same URL)."""
        # Any channel that sends issues, or the public archive pages (their links are tracked too): which
        # names exist is the channels' business, the column's width is ours.
        if not channel or len(channel) > NAME_LENGTH or not channel.isidentifier():
            raise BadInput(f"not a channel name: {channel[:20]!r}")
        rows = {}
        for token, url in links:
            if not _TOKEN.fullmatch(token):
                raise BadInput(f"not a tracking token: {token[:40]!r}")
            if urlsplit(url).scheme.lower() not in _SCHEMES:
                raise BadInput("a tracked link must be an http(s) URL")
            rows[token] = {"token": token, "channel": channel, "issue_date": issue_date, "url": url}
        if not rows:
            return
        now = self._clock()
        table = core_table(LinkRow)
        dialect = postgresql if self._database.backend == "postgresql" else sqlite
        statement = dialect.insert(table).on_conflict_do_nothing(index_elements=[table.c.token])
        async with self._database.transaction("write") as connection:
            await connection.execute(
                statement, [row | {"clicks": 0, "created_at": now} for row in rows.values()]
            )

    async def resolve(self, token: str) -> str | None:
        """The URL of `token`, counting one click; None for a token never stored."""
        link = await self.click(token)
        return None if link is None else link.url

    async def click(self, token: str) -> TrackedLink | None:
        """Count one click on `token` and return its link (with the new count); None if unknown.

        An unknown token costs one read: /r/ is public, and a write transaction per guessed token would
        queue every forged click behind SQLite's one write lock.
        """
        if await self.find(token) is None:
            return None
        table = core_table(LinkRow)
        async with self._database.transaction("write") as connection:
            # One statement: concurrent clicks each add one, none is lost.
            result = await connection.execute(
                update(table)
                .where(table.c.token == token)
                .values(clicks=table.c.clicks + 1)
                .returning(table.c.channel, table.c.issue_date, table.c.url, table.c.clicks)
            )
            found = result.first()
        if found is None:
            return None
        channel, issue_date, url, clicks = found
        return TrackedLink(token, channel, issue_date, url, clicks)

    async def find(self, token: str) -> TrackedLink | None:
        """The link of `token` without counting a click (HEAD requests, link checkers)."""
        if not _TOKEN.fullmatch(token):
            return None
        table = core_table(LinkRow)
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(table).where(table.c.token == token))).first()
        if row is None:
            return None
        return TrackedLink(row.token, row.channel, row.issue_date, row.url, row.clicks)

    async def clicks(self, token: str) -> int:
        link = await self.find(token)
        return 0 if link is None else link.clicks
