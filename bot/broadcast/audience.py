"""Who of the active subscribers gets an issue: topic preferences, and each channel's own rule (WeChat's
48 h customer-service window: channels/wechat/channel.py).

A subscriber without topics gets every issue. One with topics gets an issue that is about at least one of
them, as a reader would judge it: the topic appears in the issue (titles, section names, tags, summaries,
quick news; case and width folded), or the keyword search finds it in the issue, which brings the
glossary along (a reader who chose 量化 gets an issue whose only item says "INT8"). Each distinct topic is
decided once per broadcast.

The rule is an `Audience` of two parts, each channel's `window(now)` and the topic rule, so that storage
can count an audience of a million in SQL (BroadcastStore.count_audience) with the very rule that `start`
applies to each subscriber.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import TYPE_CHECKING

from channels.registry import ChannelRegistry
from content.model import Issue
from storage.broadcasts import Audience, Window

if TYPE_CHECKING:
    from storage.search.index import SearchIndex

SKIP_TOPICS = "none of their topics is in this issue"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def issue_text(issue: Issue) -> str:
    parts = [issue.title, issue.headline or "", issue.tagline or "", issue.lead or ""]
    parts += [news.text for news in issue.quick_news]
    for section in issue.sections:
        parts.append(section.name)
        for item in section.items:
            parts += [item.title, item.source or "", item.summary, *item.tags, *item.fields.values()]
    return _fold("\n".join(parts))


class TopicMatcher:
    def __init__(self, issue: Issue) -> None:
        self._text = issue_text(issue)
        self._index: SearchIndex | None = None
        self._issue = issue
        self._decided: dict[str, bool] = {}

    def matches(self, topic: str) -> bool:
        decided = self._decided.get(topic)
        if decided is None:
            decided = _fold(topic) in self._text or self._found(topic)
            self._decided[topic] = decided
        return decided

    def _found(self, topic: str) -> bool:
        if self._index is None:  # built on the first topic that is not literally in the issue
            # Imported here: the search engine is ~45 MB that workers, which import this module, never use.
            from storage.search.index import SearchIndex

            self._index = SearchIndex()
            self._index.replace_issues([self._issue])
        return bool(self._index.search(topic, limit=1, cached=False).hits)


def audience(issue: Issue, now: dt.datetime, channels: ChannelRegistry) -> Audience:
    matcher = TopicMatcher(issue)

    def topics(chosen: tuple[str, ...]) -> str | None:
        if chosen and not any(matcher.matches(topic) for topic in chosen):
            return SKIP_TOPICS
        return None

    windows: dict[str, Window] = {}
    for channel in channels:
        window = channel.window(now)
        if window is not None:
            windows[channel.name] = window
    return Audience(windows=windows, topics=topics)
