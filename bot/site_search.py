"""The archive's search page: which form a client gets (JSON or HTML), matched words marked in the text
shown, and the links to the previous and next page of results.

API clients keep the JSON they always had: a client that sends no Accept, or */*, gets JSON; a browser,
whose Accept names text/html before anything that covers JSON, gets the page. `?format=` settles it
either way for a client that cannot set headers (a bookmark, curl).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from markupsafe import Markup, escape
from yarl import URL

from content.errors import BadInput
from storage.search.results import marking_pattern

FORMATS = ("json", "html")


def wants_html(request: web.Request, chosen: str | None) -> bool:
    if chosen is not None:
        if chosen not in FORMATS:
            raise BadInput(f"format must be one of {', '.join(FORMATS)}")
        return chosen == "html"
    html, json = _quality(request.headers.get("Accept", ""))
    # A tie goes to JSON: what this route answered before it had a page.
    return html > json


def _quality(accept: str) -> tuple[float, float]:
    """(how much the client wants text/html, how much application/json), by RFC 9110's Accept.

    Only text/html or text/* count for the page: */* is what API clients send."""
    html = json = 0.0
    html_rank = json_rank = -1  # the most specific range decides: text/html;q=0 beats */*
    for part in accept.split(",")[:32]:  # a header of thousands of ranges is not worth reading
        media, _, parameters = part.partition(";")
        media = media.strip().lower()
        quality = _q(parameters)
        for name, rank in (("text/html", 2), ("text/*", 1)):
            if media == name and rank > html_rank:
                html, html_rank = quality, rank
        for name, rank in (("application/json", 2), ("application/*", 1), ("*/*", 0)):
            if media == name and rank > json_rank:
                json, json_rank = quality, rank
    return html, json


_Q = re.compile(r"\s*q\s*=\s*([01](?:\.[0-9]{0,3})?)\s*$", re.IGNORECASE)


def _q(parameters: str) -> float:
    for parameter in parameters.split(";"):
        found = _Q.match(parameter)
        if found:
            return min(float(found.group(1)), 1.0)
    return 1.0


def highlighted(text: str, words: Iterable[str], query: str = "") -> Markup:
    """`text` escaped, with what `marking_pattern` finds of `words` in <mark>: the words are only looked
    for, never inserted, so neither they nor the text can bring markup of their own."""
    pattern = marking_pattern(words, query)
    if pattern is None:
        return escape(text)
    pieces: list[str] = []
    at = 0
    for found in pattern.finditer(text):
        pieces.append(escape(text[at : found.start()]))
        pieces.append(Markup("<mark>%s</mark>") % found.group(0))
        at = found.end()
    pieces.append(escape(text[at:]))
    return Markup("").join(pieces)


@dataclass(frozen=True, slots=True)
class Paging:
    previous: str | None
    next: str | None
    first: int  # 1-based number of the first result shown
    last: int


def paging(
    path: URL,
    query: str,
    *,
    limit: int,
    offset: int,
    shown: int,
    total: int,
    default_limit: int,
    furthest: int,
) -> Paging:
    """Links to the neighbouring pages, keeping the query and a limit the reader chose."""

    def at(start: int) -> str:
        params = {"q": query}
        if limit != default_limit:
            params["limit"] = str(limit)
        if start:
            params["offset"] = str(start)
        return str(path.with_query(params))

    previous = at(max(0, offset - limit)) if offset > 0 else None
    following = offset + limit
    next_page = at(following) if following < total and following <= furthest else None
    return Paging(previous=previous, next=next_page, first=offset + 1, last=offset + shown)
