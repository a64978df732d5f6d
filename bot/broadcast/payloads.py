"""Each issue rendered once per channel and worker, with its tracking links remembered before any goes
out (a click on a link must find its token in the link table)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict

from bot.rendering import Renderer
from channels.email import EmailTemplate
from channels.links import RewrittenLink
from channels.telegram import TelegramPayload
from channels.wechat import WeChatPayload
from content.errors import NotFound
from content.model import Issue
from storage.issues import IssueStore
from storage.links import LinkStore

# Issues a worker keeps rendered: the one being sent, and one more for an overlapping broadcast.
MAX_ISSUES = 4


class PayloadCache:
    def __init__(self, issues: IssueStore, links: LinkStore, renderer: Renderer) -> None:
        self._issues = issues
        self._links = links
        self._renderer = renderer
        self._cache: OrderedDict[tuple[dt.date, str], object] = OrderedDict()
        self._lock = asyncio.Lock()

    async def telegram(self, date: dt.date) -> TelegramPayload:
        payload = await self._get(date, "telegram")
        assert isinstance(payload, TelegramPayload)
        return payload

    async def wechat(self, date: dt.date) -> WeChatPayload:
        payload = await self._get(date, "wechat")
        assert isinstance(payload, WeChatPayload)
        return payload

    async def email(self, date: dt.date) -> EmailTemplate:
        payload = await self._get(date, "email")
        assert isinstance(payload, EmailTemplate)
        return payload

    async def _get(self, date: dt.date, channel: str) -> object:
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
            payload, links = self._render(issue, channel)
            tracked = [(link.token, link.original) for link in links if link.token]
            await self._links.remember(channel, date, tracked)
            self._cache[key] = payload
            while len(self._cache) > MAX_ISSUES * 3:
                self._cache.popitem(last=False)
            return payload

    def _render(self, issue: Issue, channel: str) -> tuple[object, tuple[RewrittenLink, ...]]:
        if channel == "telegram":
            telegram = self._renderer.telegram(issue)
            return telegram, telegram.links
        if channel == "wechat":
            wechat = self._renderer.wechat(issue)
            return wechat, wechat.links
        email = self._renderer.email(issue)
        return email, email.links
