"""The channel-neutral form of an issue: blocks of runs (text with an optional link) that every channel
renders in its own markup, with every link already rewritten for that channel.

issue -> `build_document` -> IssueDocument (header, lead, quick news, sections -> items, footer)
      -> `trim` (section-aware truncation, channels/fitting.py) -> channel renderer -> payload
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

from channels.links import LinkRewriter, RewrittenLink
from content.model import Issue, Item

ELLIPSIS = "…"
# The block a reader with topics finds first: the items about them, title and link only.
FOCUS_SECTION = "你关注的"


@dataclass(frozen=True, slots=True)
class Run:
    """A piece of text, linked when `url` is set; "\\n" runs separate lines."""

    text: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ItemBlock:
    title: str
    url: str | None  # the rewritten primary link, None when the item has none
    source: str | None
    tags: tuple[str, ...]
    summary: tuple[Run, ...]
    original_url: str | None = None  # before rewriting, for checks and the `links` list

    @property
    def summary_text(self) -> str:
        return "".join(run.text for run in self.summary)


@dataclass(frozen=True, slots=True)
class SectionBlock:
    name: str
    items: tuple[ItemBlock, ...]
    omitted: int = 0  # items left out by truncation: rendered as "还有 N 条"
    # The reader's own block (FOCUS_SECTION): its items repeat ones of the issue's sections, so it is not
    # counted, and its "还有 N 条" points at the whole issue, not at an anchor of the archive page.
    focus: bool = False


@dataclass(frozen=True, slots=True)
class IssueDocument:
    date: dt.date
    title: str
    headline: str | None
    tagline: str | None
    lead: str | None  # plain text
    quick_news: tuple[ItemBlock, ...]
    sections: tuple[SectionBlock, ...]
    issue_url: str | None  # the public page of the whole issue, where "还有 N 条" and 阅读原文 point
    links: tuple[RewrittenLink, ...]

    @property
    def item_count(self) -> int:
        return sum(len(section.items) + section.omitted for section in self.sections if not section.focus)

    def numbered(self) -> list[tuple[int, SectionBlock]]:
        """Sections with their number on the archive page (#section-N); the focus block has 0."""
        numbered: list[tuple[int, SectionBlock]] = []
        count = 0
        for section in self.sections:
            if not section.focus:
                count += 1
            numbered.append((0 if section.focus else count, section))
        return numbered

    def section_url(self, section: SectionBlock) -> str | None:
        if section.focus:
            return self.issue_url
        position = next(
            (index for index, other in self.numbered() if other.name == section.name and not other.focus), 0
        )
        return f"{self.issue_url}#section-{position}" if self.issue_url else None


class SummaryParser:
    """Markdown for summaries. Building one costs milliseconds: make it once per renderer.

    linkify-it's pretest costs ~0.1 ms per paragraph, most of a render, so text without a URL goes
    through a parser without it.
    """

    def __init__(self) -> None:
        self._linkify = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "strikethrough"])
        self._plain = MarkdownIt("commonmark").enable("strikethrough")

    def parse(self, markdown: str) -> list[Token]:
        bare_url = "://" in markdown or "www." in markdown
        return (self._linkify if bare_url else self._plain).parse(markdown)


def summary_parser() -> SummaryParser:
    return SummaryParser()


def build_document(issue: Issue, rewriter: LinkRewriter, md: SummaryParser | None = None) -> IssueDocument:
    """Every link rewritten once, summaries turned into runs; empty sections are kept (drafts)."""
    md = md or summary_parser()
    sections = tuple(
        SectionBlock(section.name, tuple(_item(item, rewriter, md) for item in section.items))
        for section in issue.sections
    )
    quick_news = tuple(
        ItemBlock(
            title=news.text,
            url=rewriter.rewrite(news.url),
            source=None,
            tags=(),
            summary=(),
            original_url=news.url,
        )
        for news in issue.quick_news
    )
    issue_url = rewriter.issue_page()
    # The lead is shown as plain text (channels cut it by characters); its rare inline links are kept as
    # their text only, through a throwaway rewriter so they do not join this channel's link list.
    lead_runs = markdown_runs(issue.lead or "", LinkRewriter(rewriter.policy, issue.date), md)
    lead = "".join(run.text for run in lead_runs).strip()
    return IssueDocument(
        date=issue.date,
        title=issue.title,
        headline=issue.headline,
        tagline=issue.tagline,
        lead=lead or None,
        quick_news=quick_news,
        sections=sections,
        issue_url=issue_url,
        links=rewriter.links,
    )


def _item(item: Item, rewriter: LinkRewriter, md: SummaryParser) -> ItemBlock:
    url = rewriter.rewrite(item.url)
    return ItemBlock(
        title=item.title,
        url=url,
        source=item.source,
        tags=item.tags,
        summary=markdown_runs(item.summary, rewriter, md),
        original_url=item.url if url else None,
    )


def markdown_runs(markdown: str, rewriter: LinkRewriter, md: SummaryParser) -> tuple[Run, ...]:
    """Markdown -> runs: paragraphs and list items become lines, links keep their (rewritten) target,
    emphasis and code become plain text, images and HTML are dropped."""
    runs: list[Run] = []
    prefixes: list[str] = []
    counters: list[int] = []
    for token in md.parse(markdown):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            counters.append(0 if token.type == "bullet_list_open" else int(token.attrGet("start") or 1) - 1)
            prefixes.append("•" if token.type == "bullet_list_open" else "#")
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            counters.pop()
            prefixes.pop()
        elif token.type == "list_item_open" and counters:
            counters[-1] += 1
            mark = "•" if prefixes[-1] == "•" else f"{counters[-1]}."
            _newline(runs)
            runs.append(Run("  " * (len(prefixes) - 1) + mark + " "))
        elif token.type == "inline":
            runs.extend(_inline_runs(token.children or [], rewriter))
        elif token.type in ("paragraph_close", "heading_close", "fence", "code_block"):
            if token.type in ("fence", "code_block"):
                runs.append(Run(token.content.rstrip("\n")))
            _newline(runs)
    while runs and runs[-1].text == "\n":
        runs.pop()
    return tuple(_merge(runs))


def _inline_runs(children: list[Token], rewriter: LinkRewriter) -> list[Run]:
    runs: list[Run] = []
    target: str | None = None
    for child in children:
        if child.type == "link_open":
            target = rewriter.rewrite(str(child.attrs.get("href", "")))
        elif child.type == "link_close":
            target = None
        elif child.type in ("text", "code_inline"):
            runs.append(Run(child.content, target))
        elif child.type in ("softbreak", "hardbreak"):
            runs.append(Run("\n"))
    return runs


def _newline(runs: list[Run]) -> None:
    if runs and runs[-1].text != "\n":
        runs.append(Run("\n"))


def _merge(runs: list[Run]) -> list[Run]:
    merged: list[Run] = []
    for run in runs:
        if not run.text:
            continue
        if merged and merged[-1].url == run.url and run.text != "\n" and merged[-1].text != "\n":
            merged[-1] = Run(merged[-1].text + run.text, run.url)
        else:
            merged.append(run)
    return merged


def shorten_runs(runs: tuple[Run, ...], limit: int) -> tuple[Run, ...]:
    """At most `limit` characters of text, cut at a run boundary or inside unlinked text, ending in "…".

    A linked run is never cut (its text and target stay whole): it is kept or dropped entirely.
    """
    if limit <= 0:
        return ()
    if sum(len(run.text) for run in runs) <= limit:
        return runs
    kept: list[Run] = []
    room = limit - 1  # the ellipsis
    for run in runs:
        if len(run.text) <= room:
            kept.append(run)
            room -= len(run.text)
            continue
        if run.url is None and room > 0:
            kept.append(Run(run.text[:room]))
        break
    while kept and kept[-1].text == "\n":
        kept.pop()
    return (*kept, Run(ELLIPSIS))


def shorten_text(text: str, limit: int) -> str:
    """At most `limit` characters (code points, so never half a surrogate pair), ending in "…" if cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def with_focus(document: IssueDocument, picks: Sequence[tuple[int, int]]) -> IssueDocument:
    """`document` with a FOCUS_SECTION first, listing the picked items (section index, item index, in
    the issue's order) by title and link. Fitting then treats it as the first section: it keeps its
    place and at least its first item, like every section."""
    items = tuple(
        dataclasses.replace(document.sections[section].items[item], summary=(), tags=(), source=None)
        for section, item in picks
        if section < len(document.sections) and item < len(document.sections[section].items)
    )
    if not items:
        return document
    focus = SectionBlock(FOCUS_SECTION, items, focus=True)
    return dataclasses.replace(document, sections=(focus, *document.sections))


def with_items(section: SectionBlock, items: tuple[ItemBlock, ...]) -> SectionBlock:
    return dataclasses.replace(
        section, items=items, omitted=section.omitted + len(section.items) - len(items)
    )
