"""Rendering: the document as blocks of Telegram HTML, packed into messages (see the package doc)."""

from __future__ import annotations

import html

from channels.document import (
    IssueDocument,
    ItemBlock,
    Run,
    SectionBlock,
    shorten_text,
)
from channels.fitting import DoesNotFit, fit, more_line
from channels.packing import Block, fit_blocks, issue_blocks, pack, quick_news_blocks, section_blocks
from channels.telegram.payload import Size, TelegramMessage, TelegramPayload

# Caps applied while rendering, so that one header line can never fill a message by itself. The
# real issues stay far below them (the longest headline has 60 characters).
HEADER_FIELD_CHARS = 256
SECTION_NAME_CHARS = 64
SOURCE_CHARS = 64
TAG_CHARS = 32
MAX_TAGS = 8

BLOCK_SEPARATOR = "\n\n"
BULLET = "•"
ISSUE_PAGE_TEXT = "阅读网页版"
LEAD_LABEL = "<b>导读</b>："
QUICK_NEWS_HEADER = "<b>热身小新闻</b>"
CONTINUED = "（续）"


def render_telegram(document: IssueDocument, *, max_messages: int | None = None) -> TelegramPayload:
    """The issue as Telegram messages: all of it in as few messages as possible, or, with
    `max_messages`, trimmed section-aware to fit that many (raises DoesNotFit when even one short
    title per section does not)."""
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    document = _fit_blocks(document)
    if max_messages is None:
        packed = _pack(_blocks(document))
        if packed is None:  # cannot happen: _fit_blocks made every block fit alone
            raise DoesNotFit("a block is over the Telegram limits")
        return TelegramPayload(packed, document.links, document)
    limit = max_messages

    def attempt(candidate: IssueDocument) -> tuple[TelegramMessage, ...] | None:
        packed = _pack(_blocks(candidate))
        return packed if packed is not None and len(packed) <= limit else None

    messages, trimmed = fit(document, attempt)
    return TelegramPayload(messages, document.links, trimmed)


def _pack(blocks: list[Block[str]]) -> tuple[TelegramMessage, ...] | None:
    """Greedy packing (channels.packing); None when a block does not fit alone."""

    def grow(size: Size, block: Block[str]) -> Size | None:
        return _within(size + Size.of(block.separator) + Size.of(block.text))

    packed = pack(blocks, start=lambda opening, _: _within(Size.of(opening)), grow=grow)
    return None if packed is None else tuple(TelegramMessage("".join(parts)) for parts in packed)


def _within(size: Size) -> Size | None:
    return size if size.fits else None


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
    lines = [f"<b>{_text(shorten_text(document.title, HEADER_FIELD_CHARS))}</b>"]
    if document.headline:
        lines.append(_text(shorten_text(document.headline, HEADER_FIELD_CHARS)))
    if document.tagline:
        lines.append(f"<i>{_text(shorten_text(document.tagline, HEADER_FIELD_CHARS))}</i>")
    if document.issue_url:
        lines.append(_link(ISSUE_PAGE_TEXT, document.issue_url))
    return "\n".join(lines)


def _quick_news_blocks(news: tuple[ItemBlock, ...]) -> list[Block[str]]:
    bullets = [_bullet(entry) for entry in news]
    return quick_news_blocks(
        QUICK_NEWS_HEADER,
        bullets,
        join=_join,
        fits_alone=_fits,
        separator=BLOCK_SEPARATOR,
        line_separator="\n",
    )


def _bullet(entry: ItemBlock) -> str:
    return f"{BULLET} {_link(entry.title, entry.url)}"


def _section_blocks(document: IssueDocument, section: SectionBlock) -> list[Block[str]]:
    name = f"【{shorten_text(section.name, SECTION_NAME_CHARS)}】"
    header = f"<b>{_text(name)}</b>"
    more = _more(document, section) if section.omitted else None
    items = [_item(index + 1, item) for index, item in enumerate(section.items)]
    return section_blocks(header, header + CONTINUED, more, items, join=_join, separator=BLOCK_SEPARATOR)


def _join(first: str, then: str) -> str:
    return f"{first}\n{then}"


def _item(number: int, item: ItemBlock) -> str:
    tags = "".join(f"[{_text(shorten_text(tag, TAG_CHARS))}] " for tag in item.tags[:MAX_TAGS])
    title = item.title.strip() or item.original_url or item.url or "…"
    line = f"{number}. {tags}{_link(title, item.url)}"
    if item.source:
        line += f" · {_text(shorten_text(item.source, SOURCE_CHARS))}"
    summary = _runs(item.summary)
    return f"{line}\n{summary}" if summary else line


def _more(document: IssueDocument, section: SectionBlock) -> str:
    return _link(more_line(section.omitted), document.section_url(section) or document.issue_url)


def _runs(runs: tuple[Run, ...]) -> str:
    text = "".join(_link(run.text, run.url) for run in runs)
    return text.strip("\n")


def _link(text: str, url: str | None) -> str:
    if not url or not text.strip():
        return _text(text)
    return f'<a href="{html.escape(url, quote=True)}">{_text(text)}</a>'


def _text(text: str) -> str:
    return html.escape(text, quote=False)


def _lead(text: str | None) -> str | None:
    """The 导读, plain text in the document (channels/document.py), escaped for HTML."""
    return f"{LEAD_LABEL}{_text(text.strip())}" if text and text.strip() else None


def _fit_blocks(document: IssueDocument) -> IssueDocument:
    """Shorten what is too long for one message by itself (channels.packing.fit_blocks)."""
    return fit_blocks(
        document,
        lead_fits=lambda lead: _fits(_lead(lead)),
        news_fits=lambda entry: _fits(_join(QUICK_NEWS_HEADER, _bullet(entry))),
        opening_fits=lambda section, index: _fits(_section_blocks(document, section)[index].opening),
        message="Telegram message",
        drop_links=False,
    )


def _fits(text: str | None) -> bool:
    return text is None or Size.of(text).fits
