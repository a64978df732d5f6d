"""What a search answers, apart from the engine: the routes, dialogs and CLI that show results import
these without loading tantivy and the segmenter (about 45 MB), which processes that never search, such
as broadcast workers, then do not pay for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CACHED_QUERY_CHARS = 256  # longer texts are not worth keeping (and would make the cache large)
MAX_LIMIT = 50  # results per page: a page, not a dump of the index
# The furthest a search pages. tantivy collects the best offset + limit items of a query in memory (it
# sizes that buffer up front, so offset=10**10 asks for 160 GB and aborts the process), and no reader
# pages past the 1,000th result of a keyword search: every caller, HTTP, bots and CLI, stops here.
MAX_OFFSET = 1000


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
