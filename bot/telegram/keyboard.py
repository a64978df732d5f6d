"""Paging through search results: the 上一页/下一页 buttons and what their callback data holds.

Telegram gives a button at most 64 bytes of callback data (Bot API, InlineKeyboardButton), which a
Chinese query of 20 characters already fills. So the data carries the query itself when it fits,
"s:<offset>:<query>", and otherwise a key into a small per-app memory of recent queries,
"k:<offset>:<key>". A key can outlive its entry (a restart, or thousands of newer queries); the reader
is then asked to search again, never shown results for a different, truncated query.

Callback data comes back from the client, which a hostile client can forge: everything is parsed
defensively, and the worst a forged button can do is run a search of its choice.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cachetools import LRUCache
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

MAX_CALLBACK_DATA_BYTES = 64  # Bot API: InlineKeyboardButton.callback_data, 1-64 bytes
PAGE_SIZE = 5
# Paging stops here: nobody reads page 100, and a forged offset should not make the index walk far.
# (At most storage.search.results.MAX_OFFSET, past which the index answers no items.)
MAX_OFFSET = 500
_OFFSET_DIGITS = len(str(MAX_OFFSET))
RECENT_QUERIES = 4096
PREVIOUS_PAGE = "« 上一页"
NEXT_PAGE = "下一页 »"
_DIRECT = "s"
_KEYED = "k"


class RecentQueries:
    """The last RECENT_QUERIES long queries, by a short key derived from the query itself."""

    def __init__(self, capacity: int = RECENT_QUERIES) -> None:
        self._queries: LRUCache[str, str] = LRUCache(maxsize=capacity)

    def remember(self, query: str) -> str:
        key = query_key(query)
        self._queries[key] = query
        return key

    def get(self, key: str) -> str | None:
        return self._queries.get(key)

    def __len__(self) -> int:
        return len(self._queries)


def query_key(query: str) -> str:
    """12 URL-safe characters (72 bits): the same query gets the same key, so re-sending it adds nothing."""
    digest = hashlib.blake2b(query.encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class PageRequest:
    query: str
    offset: int


def page_data(query: str, offset: int, recent: RecentQueries) -> str:
    """The callback data of a button that shows the results of `query` from `offset` on."""
    direct = f"{_DIRECT}:{offset}:{query}"
    if len(direct.encode()) <= MAX_CALLBACK_DATA_BYTES:
        return direct
    return f"{_KEYED}:{offset}:{recent.remember(query)}"


def read_page_data(data: str, recent: RecentQueries) -> PageRequest | None:
    """What a pressed button asks for; None when the data is not ours or its query is forgotten."""
    kind, _, rest = data.partition(":")
    raw_offset, _, value = rest.partition(":")
    offset = read_offset(raw_offset)
    if kind not in (_DIRECT, _KEYED) or offset is None:
        return None
    query = value if kind == _DIRECT else recent.get(value)
    if query is None:
        return None
    return PageRequest(query, offset)


def read_offset(text: str) -> int | None:
    """An offset a client sent back (callback data, an inline query's offset): 0..MAX_OFFSET in ASCII
    digits, or None. The length is checked first, so a forged 5,000-digit offset is not even converted."""
    if not 0 < len(text) <= _OFFSET_DIGITS or not text.isascii() or not text.isdigit():
        return None
    offset = int(text)
    return offset if offset <= MAX_OFFSET else None


def page_keyboard(
    query: str, offset: int, shown: int, total: int, recent: RecentQueries
) -> InlineKeyboardMarkup | None:
    """上一页/下一页 for a page of `shown` results starting at `offset`; None when there is one page."""
    buttons = []
    if offset > 0:
        buttons.append(
            InlineKeyboardButton(
                PREVIOUS_PAGE, callback_data=page_data(query, max(0, offset - PAGE_SIZE), recent)
            )
        )
    following = offset + shown
    if shown and following < total and following <= MAX_OFFSET:
        buttons.append(InlineKeyboardButton(NEXT_PAGE, callback_data=page_data(query, following, recent)))
    return InlineKeyboardMarkup([buttons]) if buttons else None
