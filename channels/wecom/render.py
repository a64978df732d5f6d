"""Rendering: the document as blocks of WeCom markdown, packed into messages (see the package doc)."""

from __future__ import annotations

from typing import Any

from channels.base import utf8_bytes
from channels.document import IssueDocument, ItemBlock, Run, SectionBlock, shorten_text
from channels.fitting import DoesNotFit, fit, more_line
from channels.packing import Block, fit_blocks, issue_blocks, pack, quick_news_blocks, section_blocks
from channels.wecom import markup
from channels.wecom.payload import WECOM_MAX_CONTENT_BYTES, WeComPayload, markdown_body

# Caps applied while rendering, so that one header line can never fill a message by itself (the real
# issues stay far below them: the longest headline has 60 characters). As for Telegram.
HEADER_FIELD_CHARS = 256
SECTION_NAME_CHARS = 64
SOURCE_CHARS = 64
TAG_CHARS = 32
MAX_TAGS = 8

BLOCK_SEPARATOR = "\n\n"
LINE_SEPARATOR = "\n"
BULLET = "•"
ISSUE_PAGE_TEXT = "阅读网页版"
LEAD_LABEL = "导读："
QUICK_NEWS_HEADER = "热身小新闻"
CONTINUED = "（续）"
TAGLINE_COLOUR = "comment"  # grey: the tagline is a motto, not news


def render_wecom(document: IssueDocument, *, max_messages: int | None = None) -> WeComPayload:
    """The issue as group-robot markdown messages: all of it in as few messages as possible, or, with
    `max_messages`, trimmed section-aware to fit that many (raises DoesNotFit when even one short
    title per section does not)."""
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    document = _fit_blocks(document)
    if max_messages is None:
        packed = _pack(_blocks(document))
        if packed is None:  # only a header over the limit by itself (an absurd public URL) gets here
            raise DoesNotFit("a block is over the WeCom markdown limit")
        return WeComPayload(_bodies(packed), document.links, document)
    limit = max_messages

    def attempt(candidate: IssueDocument) -> tuple[str, ...] | None:
        packed = _pack(_blocks(candidate))
        return packed if packed is not None and len(packed) <= limit else None

    contents, trimmed = fit(document, attempt)
    return WeComPayload(_bodies(contents), document.links, trimmed)


def _bodies(contents: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(markdown_body(content) for content in contents)


def _fits(text: str | None) -> bool:
    return text is None or utf8_bytes(text) <= WECOM_MAX_CONTENT_BYTES


def _pack(blocks: list[Block[str]]) -> tuple[str, ...] | None:
    """Greedy packing (channels.packing); None when a block does not fit alone. UTF-8 sizes add up under
    concatenation, so each block is measured once."""

    def grow(size: int, block: Block[str]) -> int | None:
        return _within(size + utf8_bytes(block.separator) + utf8_bytes(block.text))

    packed = pack(blocks, start=lambda opening, _: _within(utf8_bytes(opening)), grow=grow)
    return None if packed is None else tuple("".join(parts) for parts in packed)


def _within(size: int) -> int | None:
    return size if size <= WECOM_MAX_CONTENT_BYTES else None


def _blocks(document: IssueDocument) -> list[Block[str]]:
    return issue_blocks(
        document,
        header=_header(document),
        lead=_lead(document.lead),
        quick_news=_quick_news_blocks(document.quick_news),
        section=lambda section: _section_blocks(document, section),
        separator=BLOCK_SEPARATOR,
    )


def _header(document: IssueDocument) -> str:
    lines = [markup.heading(shorten_text(document.title, HEADER_FIELD_CHARS))]
    if document.headline:
        lines.append(markup.line(shorten_text(document.headline, HEADER_FIELD_CHARS)))
    if document.tagline:
        lines.append(markup.font(shorten_text(document.tagline, HEADER_FIELD_CHARS), TAGLINE_COLOUR))
    if document.issue_url:
        lines.append(markup.link(ISSUE_PAGE_TEXT, document.issue_url))
    return "\n".join(lines)


def _lead(text: str | None) -> str | None:
    """The 导读 as a quote, one quote line per line of the (plain text) lead."""
    if not text or not text.strip():
        return None
    return markup.quoted(LEAD_LABEL + text.strip())


def _quick_news_blocks(news: tuple[ItemBlock, ...]) -> list[Block[str]]:
    bullets = [_bullet(entry) for entry in news]
    header = markup.bold(QUICK_NEWS_HEADER)
    return quick_news_blocks(
        header,
        bullets,
        join=_join,
        fits_alone=_fits,
        separator=BLOCK_SEPARATOR,
        line_separator=LINE_SEPARATOR,
    )


def _bullet(entry: ItemBlock) -> str:
    return f"{BULLET} {markup.link(entry.title, entry.url)}"


def _section_blocks(document: IssueDocument, section: SectionBlock) -> list[Block[str]]:
    name = f"【{shorten_text(section.name, SECTION_NAME_CHARS)}】"
    header = markup.bold(name)
    more = _more(document, section) if section.omitted else None
    items = [_item(index + 1, item) for index, item in enumerate(section.items)]
    return section_blocks(header, header + CONTINUED, more, items, join=_join, separator=BLOCK_SEPARATOR)


def _join(first: str, then: str) -> str:
    return f"{first}{LINE_SEPARATOR}{then}"


def _item(number: int, item: ItemBlock) -> str:
    tags = "".join(markup.line(f"[{shorten_text(tag, TAG_CHARS)}] ") for tag in item.tags[:MAX_TAGS])
    title = item.title.strip() or shorten_text(item.original_url or item.url or "…", HEADER_FIELD_CHARS)
    line = f"{number}. {tags}{markup.link(title, item.url)}"
    if item.source:
        line += f" · {markup.line(shorten_text(item.source, SOURCE_CHARS))}"
    summary = _runs(item.summary)
    return f"{line}\n{summary}" if summary else line


def _more(document: IssueDocument, section: SectionBlock) -> str:
    return markup.link(more_line(section.omitted), document.section_url(section) or document.issue_url)


def _runs(runs: tuple[Run, ...]) -> str:
    text = "".join(markup.link(run.text, run.url) if run.url else markup.text(run.text) for run in runs)
    return text.strip("\n")


# --- making every block fit in one message by itself ---------------------------------------------------


def _fit_blocks(document: IssueDocument) -> IssueDocument:
    """Shorten what is too long for one message by itself (channels.packing.fit_blocks); an item loses its
    link as a last resort (a link longer than the whole message limit)."""
    return fit_blocks(
        document,
        lead_fits=lambda lead: _fits(_lead(lead)),
        news_fits=lambda entry: _fits(_join(markup.bold(QUICK_NEWS_HEADER), _bullet(entry))),
        opening_fits=lambda section, index: _fits(_section_blocks(document, section)[index].opening),
        message="WeCom message",
        drop_links=True,
    )
