"""What the account answers: follow/unfollow, the text commands 订阅 退订 最新 更多 帮助 我的订阅 (订阅 and
退订 also with topic words: `订阅 量化 剪枝`), and anything else as a keyword search. Every answer is a text
for a passive reply or a customer-service message, so it stays within WECHAT_TEXT_MAX_BYTES of UTF-8 and
shows links as <a href> (which WeChat text allows).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cachetools import LRUCache, TTLCache

from bot.last_seen import LastSeenBuffer
from bot.services import Services
from bot.topics import change_lines, describe_topics
from bot.wechat.protocol import Message, masked
from channels.base import utf8_bytes
from channels.document import shorten_text
from channels.links import LinkRewriter
from channels.wechat.channel import WECHAT
from channels.wechat.render import WECHAT_TEXT_MAX_BYTES, render_wechat
from channels.wechat.render import _safe as plain_text
from channels.wechat.render import _text_link as text_link
from content.errors import BadInput, JianbaoError
from storage.search.results import CACHED_QUERY_CHARS, MAX_OFFSET, SearchHit, SearchResult
from storage.subscribers import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

CHANNEL = WECHAT.name
SEARCH_PAGE = 5  # items per search reply: a chat screen, not an archive page
TITLE_CHARS = 60  # a longer title is cut, so that five items fit the budget with their links
QUERY_ECHO_CHARS = 20  # how much of the reader's query the reply repeats


class Command(StrEnum):
    SUBSCRIBE = "订阅"
    UNSUBSCRIBE = "退订"
    LATEST = "最新"
    MORE = "更多"
    HELP = "帮助"
    TOPICS = "我的订阅"


# What a reader may type for each command (compared after trimming and case-folding).
COMMAND_WORDS: dict[str, Command] = {
    **{word: Command.SUBSCRIBE for word in ("订阅", "subscribe")},
    **{word: Command.UNSUBSCRIBE for word in ("退订", "取消订阅", "unsubscribe", "td")},
    **{word: Command.LATEST for word in ("最新", "最新一期", "latest")},
    **{word: Command.MORE for word in ("更多", "more")},
    **{word: Command.HELP for word in ("帮助", "help", "?", "？")},
    **{word: Command.TOPICS for word in ("我的订阅", "我的话题", "topics")},
}
# 订阅/退订 followed by topic words: `订阅 量化、剪枝`. The separator is required, so that a search such as
# 订阅号 stays a search; anchored, so that a keyword (most messages) fails at its first character.
_WITH_TOPICS = re.compile(r"(订阅|subscribe|退订|取消订阅|unsubscribe|td)[\s,，、;；]+(\S.*)", re.I | re.S)

# The commands whose answer reads or writes the database.
NEEDS_STORAGE = frozenset({Command.SUBSCRIBE, Command.UNSUBSCRIBE, Command.LATEST, Command.TOPICS})


def _command(message: Message) -> tuple[Command | None, str]:
    """The command of a text and its topic words ("" when none were given)."""
    text = message.content.strip()
    command = COMMAND_WORDS.get(text.rstrip("。.!！").casefold())
    if command is not None:
        return command, ""
    found = _WITH_TOPICS.fullmatch(text)
    if found is None:
        return None, ""
    return COMMAND_WORDS[found.group(1).casefold()], found.group(2)


USAGE = (
    "发送关键词（如：量化、剪枝、NPU）搜索往期内容；『最新』看最新一期；『订阅』/『退订』开关每期推送。\n"
    "只想看某些话题：『订阅 量化 剪枝』添加，『退订 量化』去掉，『我的订阅』查看。"
)
WELCOME = "欢迎关注嵌入式AI简报！已为你订阅每期推送。\n" + USAGE
HELP = "嵌入式AI简报\n" + USAGE
SUBSCRIBED = "订阅成功，每期简报出来后会推送给你。发送『退订』可随时停止。"
ALREADY_SUBSCRIBED = "你已经订阅了，每期简报出来后会推送给你。"
UNSUBSCRIBED = "已退订，不会再收到推送。想回来时发送『订阅』即可。"
NOT_SUBSCRIBED = "你目前没有订阅。发送『订阅』可接收每期推送。"
NO_ISSUE = "还没有发布过简报，敬请期待。"
NO_LAST_SEARCH = "先发送一个关键词搜索，再发送『更多』看后面的结果。"
NO_MORE = "没有更多结果了。换个关键词试试？"
SORRY = "抱歉，暂时无法完成，请稍后再试。"
TOPICS_CLEARED = "已清除你的话题：{topics}。以后每期简报都会完整推送给你。"
NOT_SUBSCRIBED_TOPICS = "你还没有订阅，什么也没有改。发送『订阅 话题』订阅这些话题，或『订阅』接收每期推送。"
TOPICS_HINT = "发送『订阅 话题』添加，『退订 话题』去掉，『订阅』改回接收完整简报。"
TRY_TOPICS = "可以试试：{topics}"


@dataclass(frozen=True, slots=True)
class LastSearch:
    """A reader's last query and how many of its results were shown, for 更多."""

    query: str
    shown: int


# Recording "they wrote to us" at most this often per user. The window we compute then ends at most this
# much earlier than WeChat's: a broadcast text may skip a reader it could have reached, never the reverse.
SEEN_EVERY_SECONDS = 3600.0
SEEN_MAX_ENTRIES = 100_000
# Search replies by (index generation, query, offset): after a broadcast most readers send the same few
# words, and the reply text (search, fitting, links) is most of a keyword reply's work.
REPLY_CACHE_ENTRIES = 2048


class Dialog:
    def __init__(
        self,
        services: Services,
        searches: TTLCache[str, LastSearch],
        last_seen: LastSeenBuffer,
        *,
        archive_url: str = "",
    ) -> None:
        """`archive_url`: the archive's absolute address, offered when a search has more results ("" for
        none: a chat message cannot link to a relative one)."""
        self._services = services
        self._searches = searches
        self._last_seen = last_seen
        self._archive_url = archive_url
        # openids whose last_seen_at was noted lately: one note per user per SEEN_EVERY_SECONDS, not per
        # message (the buffer writes them in batches, off the reply path).
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=SEEN_MAX_ENTRIES, ttl=SEEN_EVERY_SECONDS)
        self._replies: LRUCache[tuple[int, str, int], tuple[str, int] | None] = LRUCache(REPLY_CACHE_ENTRIES)

    def respond_at_once(self, message: Message) -> str | None:
        """The answer to a text that needs no I/O (a keyword search, 更多, 帮助: most messages, and all of a
        burst after a broadcast), given without scheduling anything; None when `respond` is needed."""
        if message.kind != "text":
            return None
        command, _ = _command(message)
        if command in NEEDS_STORAGE:
            return None
        try:
            self._note_seen(message)
            return self._answer_now(message, command)
        except Exception as error:
            return self._sorry(message, error)

    async def respond(self, message: Message) -> str | None:
        """The text to answer `message` with, or None for no answer; a failure becomes an apology."""
        try:
            if message.kind == "event":
                return await self._event(message)
            if message.kind == "text":
                return await self._text(message)
            return None  # images, voice, locations...: nothing to say
        except Exception as error:
            return self._sorry(message, error)

    def _sorry(self, message: Message, error: Exception) -> str:
        # Our own errors have one-line messages without addresses; others (a database error quoting its
        # SQL parameters) may hold the openid, so only their type is logged.
        detail = error.message if isinstance(error, JianbaoError) else type(error).__qualname__
        log.error("WeChat %s from %s not answered: %s", message.kind, masked(message.openid), detail)
        return SORRY

    async def _event(self, message: Message) -> str | None:
        subscribers = self._services.subscribers
        if message.event == "subscribe":  # a follow, also through a QR code (EventKey qrscene_...)
            await subscribers.subscribe(CHANNEL, self._openid(message))
            return WELCOME
        if message.event == "unsubscribe":  # the user cannot see a reply any more
            await subscribers.unsubscribe(CHANNEL, self._openid(message))
        return None

    def _note_seen(self, message: Message) -> None:
        if message.openid not in self._seen:
            self._seen[message.openid] = True
            # A user's message opens the 48 h window for customer-service messages (broadcast texts). An
            # openid the channel refuses is not noted; a search still gets its answer.
            with contextlib.suppress(BadInput):
                self._last_seen.note(self._openid(message))

    async def _text(self, message: Message) -> str:
        self._note_seen(message)
        command, words = _command(message)
        subscribers = self._services.subscribers
        if command is Command.SUBSCRIBE:
            return await (self._add_topics(message, words) if words else self._subscribe(message))
        if command is Command.UNSUBSCRIBE:
            if words:
                return await self._remove_topics(message, words)
            left = await subscribers.unsubscribe(CHANNEL, self._openid(message))
            return UNSUBSCRIBED if left else NOT_SUBSCRIBED
        if command is Command.TOPICS:
            return self._my_topics(await self._active(message))
        if command is Command.LATEST:
            issue = await self._services.storage.issues.latest()
            return render_wechat(self._services.renderer.document(issue, CHANNEL)).text if issue else NO_ISSUE
        return self._answer_now(message, command)

    # --- topics -----------------------------------------------------------------------------------

    async def _active(self, message: Message) -> Subscriber | None:
        found = await self._services.subscribers.get(CHANNEL, self._openid(message))
        return found if found is not None and found.status is SubscriberStatus.ACTIVE else None

    async def _subscribe(self, message: Message) -> str:
        """订阅 alone: every issue, whole. A reader who had chosen topics is told which were cleared."""
        openid = self._openid(message)
        subscriber, changed = await self._services.subscribers.subscribe(CHANNEL, openid)
        if not subscriber.topics:
            return SUBSCRIBED if changed else ALREADY_SUBSCRIBED
        await self._services.subscribers.set_topics(CHANNEL, openid, ())
        cleared = TOPICS_CLEARED.format(topics="、".join(subscriber.topics))
        return fit(plain_text(f"{SUBSCRIBED}\n{cleared}" if changed else cleared))

    async def _add_topics(self, message: Message, words: str) -> str:
        """订阅 量化 剪枝: subscribes the reader when a topic is taken, and adds the topics. Nothing is stored
        when every word is refused, so a typo does not subscribe anyone."""
        openid = self._openid(message)
        subscribers = self._services.subscribers
        active = await self._active(message)
        # A reader who left starts afresh: the topics they had are not brought back with the new ones.
        change = self._services.topics.add(active.topics if active else (), words)
        lines = [change_lines(change)]
        if active is None and not change.added:
            lines.append(NOT_SUBSCRIBED_TOPICS)
        elif active is None:
            subscriber, _ = await subscribers.subscribe(CHANNEL, openid, topics=change.after)
            if subscriber.topics != change.after:  # subscribed meanwhile by another message: theirs stays
                await subscribers.set_topics(CHANNEL, openid, change.after)
            lines = [SUBSCRIBED, *lines, describe_topics(change.after)]
        else:
            if change.changed:
                await subscribers.set_topics(CHANNEL, openid, change.after)
            lines.append(describe_topics(change.after))
        return fit(plain_text("\n".join(line for line in lines if line)))

    async def _remove_topics(self, message: Message, words: str) -> str:
        """退订 量化: the topic goes; the reader stays subscribed (to everything when none is left)."""
        active = await self._active(message)
        if active is None:
            return NOT_SUBSCRIBED
        change = self._services.topics.remove(active.topics, words)
        if change.changed:
            await self._services.subscribers.set_topics(CHANNEL, self._openid(message), change.after)
        return fit(
            plain_text(
                "\n".join(line for line in (change_lines(change), describe_topics(change.after)) if line)
            )
        )

    def _my_topics(self, active: Subscriber | None) -> str:
        if active is None:
            return NOT_SUBSCRIBED
        lines = [describe_topics(active.topics), TOPICS_HINT]
        if not active.topics:
            popular = self._services.topics.popular()
            if popular:
                lines.append(TRY_TOPICS.format(topics="、".join(popular)))
        return fit(plain_text("\n".join(lines)))

    def _answer_now(self, message: Message, command: Command | None) -> str:
        """The answers that need no I/O: help, 更多, and a keyword search."""
        if command is Command.HELP:
            return HELP
        if command is Command.MORE:
            last = self._searches.get(message.openid)
            if last is None:
                return NO_LAST_SEARCH
            return self._search(message.openid, last.query, offset=last.shown) or NO_MORE
        return self._search(message.openid, message.content, offset=0) or NO_MORE

    def _search(self, openid: str, query: str, *, offset: int) -> str | None:
        """The reply listing one page of results (None when a 更多 finds nothing more).

        更多 pages through the first MAX_OFFSET results, as far as the index serves (its offset comes from
        our own memory of the reader's last search, which only grows by what was shown)."""
        if offset >= MAX_OFFSET:
            return None
        self._services.metrics.searches.labels(CHANNEL).inc()
        index = self._services.search
        key = (index.generation, query, offset)
        if key in self._replies:
            reply = self._replies[key]
        else:
            reply = self._reply(query, offset)
            if len(query) <= CACHED_QUERY_CHARS:
                self._replies[key] = reply
        if reply is None:
            return None
        text, shown = reply
        if shown:
            self._searches[openid] = LastSearch(query, offset + shown)
        return text

    def _reply(self, query: str, offset: int) -> tuple[str, int] | None:
        """One page of results as a reply and how many items it shows (0 for a hint); None for nothing."""
        result = self._services.search.search(query, limit=SEARCH_PAGE, offset=offset)
        if not result.hits:
            return None if offset else (result.hint or NO_MORE, 0)
        return search_reply(result, offset=offset, links=self._links, archive_url=self._archive_url)

    def _openid(self, message: Message) -> str:
        return self._services.channels.check_address(CHANNEL, message.openid)

    def _links(self, hit: SearchHit) -> str | None:
        """An item's link as the WeChat channel shows it (UTM and click tracking as configured)."""
        rewriter = LinkRewriter(self._services.renderer.policy(CHANNEL), hit.date)
        return rewriter.rewrite(hit.url) or rewriter.issue_page()


def fit(text: str, max_bytes: int = WECHAT_TEXT_MAX_BYTES) -> str:
    """`text` within `max_bytes` of UTF-8, cut at a character with "…" when over (20 topics of 32 Chinese
    characters, listed twice, would be)."""
    if utf8_bytes(text) <= max_bytes:
        return text
    return text.encode()[: max_bytes - len("…".encode())].decode(errors="ignore") + "…"


def search_reply(
    result: SearchResult,
    *,
    offset: int,
    links: Callable[[SearchHit], str | None],
    archive_url: str,
    max_bytes: int = WECHAT_TEXT_MAX_BYTES,
) -> tuple[str, int]:
    """Numbered items (title link and issue date) and a 更多 hint within `max_bytes`, and how many items.

    Items are dropped from the end while the text is too long (they join the "more" count); as a last
    resort the one left loses its link, so a title of TITLE_CHARS always fits.
    """
    hits = list(result.hits)
    with_links = True
    while True:
        text = _search_text(
            result, hits, offset=offset, links=links if with_links else None, archive_url=archive_url
        )
        if utf8_bytes(text) <= max_bytes:
            return text, len(hits)
        if len(hits) > 1:
            hits.pop()
        elif with_links:
            with_links = False
        else:
            return shorten_text(text, max_bytes // 4), len(hits)  # 4 bytes per character at most


def _search_text(
    result: SearchResult,
    hits: list[SearchHit],
    *,
    offset: int,
    links: Callable[[SearchHit], str | None] | None,
    archive_url: str,
) -> str:
    query = plain_text(shorten_text(" ".join(result.query.split()), QUERY_ECHO_CHARS))
    lines = [f"『{query}』共找到 {result.total} 条" + ("，接着看：" if offset else "：")]
    if result.hint:
        lines.append(f"（{result.hint}）")
    for number, hit in enumerate(hits, offset + 1):
        title = shorten_text(" ".join(hit.title.split()), TITLE_CHARS)
        url = links(hit) if links else None
        lines.append(f"{number}. {text_link(title, url)}（{hit.date.isoformat()}）")
    remaining = min(result.total, MAX_OFFSET) - offset - len(hits)  # 更多 stops at MAX_OFFSET
    if remaining > 0:
        more = f"还有 {remaining} 条，发送『更多』"
        if archive_url:
            more += f"或访问 {text_link('往期简报', archive_url)}"
        lines.append(more)
    return "\n".join(lines)
