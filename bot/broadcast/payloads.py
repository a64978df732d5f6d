"""Each issue rendered once per channel and worker, with its tracking links remembered before any goes
out (a click on a link must find its token in the link table)."""

from __future__ import annotations

import asyncio
import datetime as dt

from cachetools import LRUCache

from bot.rendering import Renderer
from channels.channel import Rendered
from content.errors import NotFound
from storage.issues import IssueStore
from storage.links import LinkStore

# Issues a worker keeps rendered: the one being sent, and one more for an overlapping broadcast, on each
# of a handful of channels.
MAX_RENDERED = 4 * 8


class PayloadCache:
    def __init__(self, issues: IssueStore, links: LinkStore, renderer: Renderer) -> None:
        self._issues = issues
        self._links = links
        self._renderer = renderer
        self._cache: LRUCache[tuple[dt.date, str], Rendered] = LRUCache(maxsize=MAX_RENDERED)
        self._lock = asyncio.Lock()

    async def get(self, date: dt.date, channel: str) -> Rendered:
        key = (date, channel)
        found = self._cache.get(key)
        if found is not None:
            return found
        async with self._lock:  # the first delivery renders, the others of its batch wait for it
            found = self._cache.get(key)
            if found is not None:
                return found
            issue = await self._issues.get(date)
            if issue is None:
                raise NotFound(f"the issue of {date} is not in the database any more")
            rendered = self._renderer.render(issue, channel)
            tracked = [(link.token, link.original) for link in rendered.links if link.token]
            await self._links.remember(channel, date, tracked)
            self._cache[key] = rendered
            return rendered
