"""Rendering: the document as blocks of Telegram HTML, packed into messages (see the package doc)."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass

from channels.document import (
    IssueDocument,
    ItemBlock,
    Run,
    SectionBlock,
    shorten_runs,
    shorten_text,
)
from channels.fitting import DoesNotFit, fit, more_line, non_empty
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


@dataclass(frozen=True, slots=True)
class _Block:
    html: str  # when it follows another block in the same message
    opening: str  # when it starts a message (a section's later items repeat the section header)
    separator: str = BLOCK_SEPARATOR


def _pack(blocks: list[_Block]) -> tuple[TelegramMessage, ...] | None:
    """Greedy packing in document order (each message takes all the blocks it can: the fewest
    messages for blocks that may not be reordered); None when a block does not fit alone."""
    messages: list[str] = []
    current: list[str] = []
    size = Size()
    for block in blocks:
        if current:
            grown = size + Size.of(block.separator) + Size.of(block.html)
            if grown.fits:
                current += [block.separator, block.html]
                size = grown
                continue
            messages.append("".join(current))
        size = Size.of(block.opening)
        if not size.fits:
            return None
        current = [block.opening]
    if current:
        messages.append("".join(current))
    return tuple(TelegramMessage(text) for text in messages)


def _blocks(document: IssueDocument) -> list[_Block]:
    blocks = [_plain(_header(document))]
    lead = _lead(document.lead)
    if lead:
        blocks.append(_plain(lead))
    blocks += _quick_news_blocks(document.quick_news)
    for section in non_empty(document.sections):
        blocks += _section_blocks(document, section)
    return blocks


def _plain(text: str, separator: str = BLOCK_SEPARATOR) -> _Block:
    return _Block(text, text, separator)


def _header(document: IssueDocument) -> str:
    lines = [f"<b>{_text(shorten_text(document.title, HEADER_FIELD_CHARS))}</b>"]
    if document.headline:
        lines.append(_text(shorten_text(document.headline, HEADER_FIELD_CHARS)))
    if document.tagline:
        lines.append(f"<i>{_text(shorten_text(document.tagline, HEADER_FIELD_CHARS))}</i>")
    if document.issue_url:
        lines.append(_link(ISSUE_PAGE_TEXT, document.issue_url))
    return "\n".join(lines)


def _quick_news_blocks(news: tuple[ItemBlock, ...]) -> list[_Block]:
    """One block; one per line when the whole list does not fit in a message by itself."""
    if not news:
        return []
    bullets = [_bullet(entry) for entry in news]
    whole = "\n".join([QUICK_NEWS_HEADER, *bullets])
    if Size.of(whole).fits:
        return [_plain(whole)]
    return [_plain(f"{QUICK_NEWS_HEADER}\n{bullets[0]}"), *(_plain(bullet, "\n") for bullet in bullets[1:])]


def _bullet(entry: ItemBlock) -> str:
    return f"{BULLET} {_link(entry.title, entry.url)}"


def _section_blocks(document: IssueDocument, section: SectionBlock) -> list[_Block]:
    name = f"【{shorten_text(section.name, SECTION_NAME_CHARS)}】"
    header = f"<b>{_text(name)}</b>"
    continued = f"{header}{CONTINUED}\n"
    more = _more(document, section) if section.omitted else None
    if not section.items:
        text = f"{header}\n{more}"
        return [_plain(text)]
    blocks = []
    last = len(section.items) - 1
    for index, item in enumerate(section.items):
        text = _item(index + 1, item)
        if index == last and more:
            text += f"\n{more}"
        if index == 0:
            blocks.append(_plain(f"{header}\n{text}"))
        else:
            blocks.append(_Block(text, continued + text))
    return blocks


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
    """Shorten what is too long for one message by itself: a summary (then its title), the lead,
    a quick news line. The real issues never need it; a 10,000-character summary does."""
    lead = document.lead
    if lead and not _fits(_lead(lead)):
        whole = lead
        length = _largest(lambda n: _fits(_lead(shorten_text(whole, n))), len(whole))
        lead = shorten_text(whole, length) if length > 0 else None
    quick_news = tuple(
        _fit(entry, lambda candidate: _fits(f"{QUICK_NEWS_HEADER}\n{_bullet(candidate)}"))
        for entry in document.quick_news
    )
    sections = []
    for section in document.sections:
        items = list(section.items)
        for index, item in enumerate(items):

            def fits(candidate: ItemBlock, index: int = index, section: SectionBlock = section) -> bool:
                trial = dataclasses.replace(
                    section, items=(*section.items[:index], candidate, *section.items[index + 1 :])
                )
                return _fits(_section_blocks(document, trial)[index].opening)

            items[index] = _fit(item, fits)
        sections.append(dataclasses.replace(section, items=tuple(items)))
    return dataclasses.replace(document, lead=lead, quick_news=quick_news, sections=tuple(sections))


def _fits(text: str | None) -> bool:
    return text is None or Size.of(text).fits


def _fit(item: ItemBlock, fits: Callable[[ItemBlock], bool]) -> ItemBlock:
    """The item with the longest summary, then the longest title, for which `fits` holds."""
    if fits(item):
        return item
    summary_length = _largest(
        lambda n: fits(dataclasses.replace(item, summary=shorten_runs(item.summary, n))),
        len(item.summary_text),
    )
    if summary_length >= 0:
        return dataclasses.replace(item, summary=shorten_runs(item.summary, summary_length))
    bare = dataclasses.replace(item, summary=())
    title_length = _largest(
        lambda n: fits(dataclasses.replace(bare, title=shorten_text(item.title, n))), len(item.title)
    )
    if title_length < 0:
        raise DoesNotFit(f"an item does not fit in one Telegram message: {item.title[:40]!r}")
    return dataclasses.replace(bare, title=shorten_text(item.title, title_length))


def _largest(fits: Callable[[int], bool], high: int) -> int:
    """The largest n in [0, high] with fits(n), for a predicate that holds up to some n; -1 if none."""
    if not fits(0):
        return -1
    low = 0  # fits(low) holds
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
