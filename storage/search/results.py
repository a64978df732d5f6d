"""What a search answers, apart from the engine: the routes, dialogs and CLI that show results import
these without loading tantivy and the segmenter (about 45 MB), which processes that never search, such
as broadcast workers, then do not pay for.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

CACHED_QUERY_CHARS = 256  # longer texts are not worth keeping (and would make the cache large)
MAX_LIMIT = 50  # results per page: a page, not a dump of the index
# The furthest a search pages. tantivy collects the best offset + limit items of a query in memory (it
# sizes that buffer up front, so offset=10**10 asks for 160 GB and aborts the process), and no reader
# pages past the 1,000th result of a keyword search: every caller, HTTP, bots and CLI, stops here.
MAX_OFFSET = 1000

_LONE = re.compile(r"[0-9A-Za-z]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]{2,}")


@dataclass(frozen=True, slots=True)
class SearchHit:
    date: dt.date
    section: str
    position: int
    title: str
    url: str | None
    snippet: str
    score: float
    matched: tuple[str, ...]  # the words (query and expansions) found in this item, for highlighting

    def to_dict(self) -> dict[str, object]:
        return {
            "date": self.date.isoformat(),
            "section": self.section,
            "position": self.position,
            "title": self.title,
            "url": self.url,
            "snippet": self.snippet,
            "score": round(self.score, 4),
            "matched": list(self.matched),
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    hits: tuple[SearchHit, ...]
    total: int
    hint: str | None = None  # a friendly word for the reader when the query was empty, cut or found nothing

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"query": self.query, "results": [hit.to_dict() for hit in self.hits]}
        data["total"] = self.total
        if self.hint:
            data["hint"] = self.hint
        return data


def marking_pattern(words: Iterable[str], query: str = "") -> re.Pattern[str] | None:
    """What a display of a hit marks (the archive's search page, `jianbao search`): `words` (a hit's
    `matched`) found case-insensitively in its text, longest first; None when none is worth marking.

    A lone Latin letter or digit (an expansion's fragment, such as the 8 of int8) would light up every
    version number in the text, so only longer words, or a CJK character, are marked. Likewise a lone CJK
    character that is a piece of a longer word, matched here or typed by the reader in `query` (the 化 of
    量化, which the search also looks for on its own), would light up 最大化 and 优化: it is marked only
    when the reader asked for it alone.
    """
    kept = {word for word in words if word.strip() and not _LONE.fullmatch(word)}
    longer = [word for word in kept if len(word) > 1] + _CJK_RUN.findall(query)
    wanted = sorted(
        (word for word in kept if len(word) > 1 or not any(word in other for other in longer)),
        key=len,
        reverse=True,
    )
    if not wanted:
        return None
    return re.compile("|".join(_alternative(word) for word in wanted), re.IGNORECASE)


def _alternative(word: str) -> str:
    """A word as the pattern looks for it: a Latin word only whole (the "low" of "low bit" is not the
    middle of TensorFlow), a CJK word anywhere (CJK text has no spaces between words)."""
    before = r"(?<![0-9A-Za-z])" if _LONE.fullmatch(word[0]) else ""
    after = r"(?![0-9A-Za-z])" if _LONE.fullmatch(word[-1]) else ""
    return before + re.escape(word) + after
