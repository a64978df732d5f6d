"""Each issue rendered once per channel and worker, and once more per distinct "你关注的" block of the
readers with topics, with its tracking links remembered before any goes out (a click on a link must find
its token in the link table).

A reader's topics pick items (TopicMatcher.focus); many topic sets pick the same items (量化 and int8
readers of an issue whose only quantization item says INT8), so renders are kept per picked items, not
per topic set: at most one render per distinct topic set, usually far fewer.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from cachetools import LRUCache

from bot.broadcast.audience import TopicMatcher
from bot.rendering import Renderer
from channels.channel import Rendered
from content.errors import NotFound
from content.model import Issue
from storage.issues import IssueStore
from storage.links import LinkStore

# Issues a worker keeps rendered: the one being sent, and one more for an overlapping broadcast, on each
# of a handful of channels.
MAX_RENDERED = 4 * 8
# Renders with a "你关注的" block a worker keeps: deliveries come in subscriber order, not grouped by
# topics, so every distinct block of a broadcast should stay (an email is at most ~85 KB: ~85 MB at most).
MAX_FOCUSED = 1024
# Issues whose topic matches a worker keeps (each holds a one-issue search index).
MAX_MATCHERS = 4
Focus = tuple[tuple[int, int], ...]


class PayloadCache:
    def __init__(self, issues: IssueStore, links: LinkStore, renderer: Renderer) -> None:
        self._issues = issues
        self._links = links
        self._renderer = renderer
        self._cache: LRUCache[tuple[dt.date, str], Rendered] = LRUCache(maxsize=MAX_RENDERED)
        self._focused: LRUCache[tuple[dt.date, str, Focus], Rendered] = LRUCache(maxsize=MAX_FOCUSED)
        self._issues_held: LRUCache[dt.date, Issue] = LRUCache(maxsize=MAX_MATCHERS)
        self._matchers: LRUCache[dt.date, TopicMatcher] = LRUCache(maxsize=MAX_MATCHERS)
        self._lock = asyncio.Lock()
        self.renders = 0  # renders made, with or without a block (for benchmarks and logs)

    async def get(self, date: dt.date, channel: str, topics: tuple[str, ...] = ()) -> Rendered:
        """The payload for a reader of `channel` with `topics` (none: the issue as everyone gets it)."""
        key = (date, channel)
        plain = self._cache.get(key)
        if plain is not None and not topics:
            return plain
        async with self._lock:  # the first delivery renders, the others of its batch wait for it
            plain = self._cache.get(key)
            if plain is None:
                issue = await self._issue(date)
                plain = self._renderer.render(issue, channel)
                self.renders += 1
                # A focused render has the same links (its block repeats items of the issue).
                tracked = [(link.token, link.original) for link in plain.links if link.token]
                await self._links.remember(channel, date, tracked)
                self._cache[key] = plain
            if not topics:
                return plain
            issue = await self._issue(date)
            matcher = self._matchers.get(date)
            if matcher is None:
                matcher = self._matchers[date] = TopicMatcher(issue)
            focus = matcher.focus(topics)
            if not focus:  # topics changed since the broadcast started, or only the lead is about them
                return plain
            focused = self._focused.get((date, channel, focus))
            if focused is None:
                focused = self._renderer.render(issue, channel, focus=focus)
                self.renders += 1
                self._focused[(date, channel, focus)] = focused
            return focused

    async def _issue(self, date: dt.date) -> Issue:
        issue = self._issues_held.get(date)
        if issue is None:
            issue = await self._issues.get(date)
            if issue is None:
                raise NotFound(f"the issue of {date} is not in the database any more")
            self._issues_held[date] = issue
        return issue
