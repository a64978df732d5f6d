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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from channels.registry import ChannelRegistry
from content.model import Issue, Item
from storage.broadcasts import Audience, Window

if TYPE_CHECKING:
    from storage.search.index import SearchIndex

SKIP_TOPICS = "none of their topics is in this issue"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def item_text(section: str, item: Item) -> str:
    return _fold(
        "\n".join([section, item.title, item.source or "", item.summary, *item.tags, *item.fields.values()])
    )


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
        self._items: dict[str, frozenset[tuple[int, int]]] = {}
        # Each item's place (section index, item index) and folded text, and its place by what a search
        # hit names it by (section name, item position): built on the first `focus`.
        self._item_texts: list[tuple[tuple[int, int], str]] = []
        self._places: dict[tuple[str, int], tuple[int, int]] | None = None

    def matches(self, topic: str) -> bool:
        decided = self._decided.get(topic)
        if decided is None:
            decided = _fold(topic) in self._text or self._found(topic)
            self._decided[topic] = decided
        return decided

    def focus(self, topics: Sequence[str]) -> tuple[tuple[int, int], ...]:
        """The items about any of `topics` as (section index, item index), in the issue's order: what
        the reader's "你关注的" block lists. Same rule as `matches`, item by item."""
        picked: set[tuple[int, int]] = set()
        for topic in topics:
            found = self._items.get(topic)
            if found is None:
                found = self._items[topic] = self._find_items(topic)
            picked |= found
        return tuple(sorted(picked))

    def _find_items(self, topic: str) -> frozenset[tuple[int, int]]:
        if not self.matches(topic):
            return frozenset()
        if self._places is None:
            self._places = {}
            for at, section in enumerate(self._issue.sections):
                for index, item in enumerate(section.items):
                    self._item_texts.append(((at, index), item_text(section.name, item)))
                    self._places[(section.name, item.position)] = (at, index)
        folded = _fold(topic)
        found = {place for place, text in self._item_texts if folded in text}
        for hit in self._search_index().every_hit(topic, cached=False):
            place = self._places.get((hit.section, hit.position))
            if place is not None:
                found.add(place)
        return frozenset(found)

    def _found(self, topic: str) -> bool:
        return bool(self._search_index().search(topic, limit=1, cached=False).hits)

    def _search_index(self) -> SearchIndex:
        if self._index is None:  # built on the first topic that is not literally in the issue
            # Imported here: the search engine is ~45 MB that workers, which import this module, never use.
            from storage.search.index import SearchIndex

            self._index = SearchIndex()
            self._index.replace_issues([self._issue])
        return self._index


def mentions(issue: Issue, topic: str) -> bool:
    """The topic written in the issue (case and width folded): the first half of TopicMatcher's rule."""
    return _fold(topic) in issue_text(issue)


def found_in(index: SearchIndex, topic: str) -> frozenset[dt.date]:
    """The issues in which the archive's search finds `topic`: the second half of TopicMatcher's rule,
    for every issue at once (a search matches an item or not whatever else the index holds), so that a
    page asking about many issues does not build a one-issue index for each."""
    return frozenset(hit.date for hit in index.every_hit(topic))


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
