"""Rendering: the document as blocks of rich-text paragraphs, packed into request bodies (see the package
doc for the layout and why rich text rather than a card)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from channels.document import (
    IssueDocument,
    ItemBlock,
    Run,
    SectionBlock,
    shorten_text,
)
from channels.feishu.payload import FEISHU_BODY_BUDGET, FeishuPayload, encode_body, encode_json, post_body
from channels.fitting import DoesNotFit, fit, more_line
from channels.packing import Block, fit_blocks, issue_blocks, pack, quick_news_blocks, section_blocks

# Caps applied while rendering, so that one header line can never fill a message by itself (the real
# issues stay far below them: the longest headline has 60 characters). As for Telegram.
HEADER_FIELD_CHARS = 256
SECTION_NAME_CHARS = 64
SOURCE_CHARS = 64
TAG_CHARS = 32
MAX_TAGS = 8

BULLET = "•"
ISSUE_PAGE_TEXT = "阅读网页版"
LEAD_LABEL = "导读："
QUICK_NEWS_HEADER = "热身小新闻"
CONTINUED = "（续）"

Node = dict[str, str]
Paragraph = tuple[Node, ...]
# A blank line between blocks: an empty text node, the usual way to space a post's paragraphs.
BLANK: Paragraph = ({"tag": "text", "text": ""},)
# In a text message "<at user_id=...>" mentions people (the guide, "文本消息的 @ 用法"); whether a post's text
# node reads it too is not documented, so an item title cannot ping a whole group: a word joiner after "<".
_AT_TAG = re.compile(r"<(?=\s*at\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"


def render_feishu(document: IssueDocument, *, max_messages: int | None = None) -> FeishuPayload:
    """The issue as custom-bot request bodies: all of it in as few messages as possible, or, with
    `max_messages`, trimmed section-aware to fit that many (raises DoesNotFit when even one short
    title per section does not)."""
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    titles = _Titles.of(document)
    document = _fit_blocks(document, titles)
    if max_messages is None:
        packed = _pack(_blocks(document, titles), titles)
        if packed is None:  # cannot happen: _fit_blocks made every block fit alone
            raise DoesNotFit("a block is over the Feishu body limit")
        return FeishuPayload(packed, document.links, document)
    limit = max_messages

    def attempt(candidate: IssueDocument) -> tuple[dict[str, Any], ...] | None:
        packed = _pack(_blocks(candidate, titles), titles)
        return packed if packed is not None and len(packed) <= limit else None

    messages, trimmed = fit(document, attempt)
    return FeishuPayload(messages, document.links, trimmed)


@dataclass(frozen=True, slots=True)
class _Titles:
    """The post title of the first message, and of the ones that continue it."""

    first: str
    later: str
    first_bytes: int  # the body's size with this title and no paragraphs, "[]" included
    later_bytes: int

    @classmethod
    def of(cls, document: IssueDocument) -> _Titles:
        first = _safe(shorten_text(document.title, HEADER_FIELD_CHARS))
        later = first + CONTINUED
        return cls(first, later, _empty_size(first), _empty_size(later))


def _empty_size(title: str) -> int:
    return len(encode_body(post_body(title, [])))


# A block's text here: its paragraphs (channels.packing joins them by concatenation).
Paragraphs = tuple[Paragraph, ...]
SPACED: Paragraphs = (BLANK,)  # before a block that follows another
UNSPACED: Paragraphs = ()  # before a quick news line continuing the list


def _size(paragraph: Paragraph) -> int:
    return len(encode_json(paragraph))


def _content_size(paragraphs: Sequence[Paragraph]) -> int:
    """What the paragraphs add inside the content array's brackets: each one, and the commas between."""
    return sum(_size(paragraph) for paragraph in paragraphs) + max(len(paragraphs) - 1, 0)


def _pack(blocks: list[Block[Paragraphs]], titles: _Titles) -> tuple[dict[str, Any], ...] | None:
    """Greedy packing (channels.packing); None when a block does not fit alone. The first message and the
    ones that continue it have different titles, so an opening's size depends on where it starts."""

    def start(opening: Paragraphs, index: int) -> int | None:
        empty = titles.later_bytes if index else titles.first_bytes
        return _within(empty + _content_size(opening))

    def grow(size: int, block: Block[Paragraphs]) -> int | None:
        return _within(size + _content_size([*block.separator, *block.text]) + 1)  # + the comma before them

    packed = pack(blocks, start=start, grow=grow)
    if packed is None:
        return None
    return tuple(
        post_body(
            titles.later if index else titles.first,
            [[dict(node) for node in paragraph] for part in parts for paragraph in part],
        )
        for index, parts in enumerate(packed)
    )


def _within(size: int) -> int | None:
    return size if size <= FEISHU_BODY_BUDGET else None


def _blocks(document: IssueDocument, titles: _Titles) -> list[Block[Paragraphs]]:
    return issue_blocks(
        document,
        header=_header(document),  # the title is the post's own title, not a paragraph
        lead=_lead(document.lead) if document.lead and document.lead.strip() else None,
        quick_news=_quick_news_blocks(document.quick_news, titles),
        section=lambda section: _section_blocks(document, section),
        separator=SPACED,
    )


def _header(document: IssueDocument) -> tuple[Paragraph, ...]:
    lines: list[Paragraph] = []
    if document.headline:
        lines.append((_text(shorten_text(document.headline, HEADER_FIELD_CHARS)),))
    if document.tagline:
        lines.append((_text(shorten_text(document.tagline, HEADER_FIELD_CHARS)),))
    if document.issue_url:
        lines.append((_link(ISSUE_PAGE_TEXT, document.issue_url),))
    return tuple(lines)


def _lead(text: str) -> tuple[Paragraph, ...]:
    """The 导读, plain text in the document, one paragraph per line."""
    lines = [line.strip() for line in f"{LEAD_LABEL}{text.strip()}".split("\n")]
    return tuple((_text(line),) for line in lines if line)


def _quick_news_blocks(news: tuple[ItemBlock, ...], titles: _Titles) -> list[Block[Paragraphs]]:
    return quick_news_blocks(
        ((_text(QUICK_NEWS_HEADER),),),
        [(_bullet(entry),) for entry in news],
        join=_join,
        fits_alone=lambda paragraphs: _fits_alone(paragraphs, titles),
        separator=SPACED,
        line_separator=UNSPACED,
    )


def _bullet(entry: ItemBlock) -> Paragraph:
    return _nodes([_text(f"{BULLET} "), _link(entry.title, entry.url)])


def _section_blocks(document: IssueDocument, section: SectionBlock) -> list[Block[Paragraphs]]:
    name = f"【{shorten_text(section.name, SECTION_NAME_CHARS)}】"
    more = (_more(document, section),) if section.omitted else None
    items = [_item(index + 1, item) for index, item in enumerate(section.items)]
    header: Paragraphs = ((_text(name),),)
    continued: Paragraphs = ((_text(name + CONTINUED),),)
    return section_blocks(header, continued, more, items, join=_join, separator=SPACED)


def _join(first: Paragraphs, then: Paragraphs) -> Paragraphs:
    return (*first, *then)


def _item(number: int, item: ItemBlock) -> tuple[Paragraph, ...]:
    tags = "".join(f"[{shorten_text(tag, TAG_CHARS)}] " for tag in item.tags[:MAX_TAGS])
    title = item.title.strip() or shorten_text(item.original_url or item.url or "…", HEADER_FIELD_CHARS)
    line = [_text(f"{number}. {tags}"), _link(title, item.url)]
    if item.source:
        line.append(_text(f" · {shorten_text(item.source, SOURCE_CHARS)}"))
    return (_nodes(line), *_run_paragraphs(item.summary))


def _more(document: IssueDocument, section: SectionBlock) -> Paragraph:
    return (_link(more_line(section.omitted), document.section_url(section) or document.issue_url),)


def _run_paragraphs(runs: tuple[Run, ...]) -> list[Paragraph]:
    """Runs as paragraphs: a "\\n" (a run, or inside a code block's text) starts a new one."""
    paragraphs: list[list[Node]] = [[]]
    for run in runs:
        if run.url is not None:
            paragraphs[-1].append(_link(run.text.replace("\n", " "), run.url))
            continue
        pieces = run.text.split("\n")
        for position, piece in enumerate(pieces):
            if position:
                paragraphs.append([])
            if piece:
                paragraphs[-1].append(_text(piece))
    return [_nodes(nodes) for nodes in paragraphs if any(node["text"].strip() for node in nodes)]


def _nodes(nodes: list[Node]) -> Paragraph:
    """Adjacent text nodes merged, empty ones dropped: fewer nodes, fewer bytes, the same text."""
    merged: list[Node] = []
    for node in nodes:
        if not node["text"]:
            continue
        if merged and node["tag"] == "text" and merged[-1]["tag"] == "text":
            merged[-1] = _text(merged[-1]["text"] + node["text"])  # a "<" and an "at" may meet here
        else:
            merged.append(node)
    return tuple(merged)


def _text(text: str) -> Node:
    return {"tag": "text", "text": _safe(text)}


def _link(text: str, url: str | None) -> Node:
    """An `a` node for a web link; the text alone for anything else. The guide: the href must be a valid
    link, "否则消息会发送失败" (or the whole message fails), so mailto: and odd schemes stay text."""
    if not url or not text.strip() or not _web_link(url):
        return _text(text)
    return {"tag": "a", "text": _safe(text), "href": url}


def _web_link(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and url.isprintable() and " " not in url


def _safe(text: str) -> str:
    return _AT_TAG.sub("<" + _WORD_JOINER, text)


# --- making every block fit in one message by itself ---------------------------------------------------


def _fits_alone(paragraphs: Sequence[Paragraph], titles: _Titles) -> bool:
    """Whether the paragraphs fit in a message of their own, under the longer (continuation) title."""
    return titles.later_bytes + _content_size(paragraphs) <= FEISHU_BODY_BUDGET


def _fit_blocks(document: IssueDocument, titles: _Titles) -> IssueDocument:
    """Shorten what is too long for one message by itself (channels.packing.fit_blocks); an item loses its
    link as a last resort (a link longer than the whole body limit)."""
    return fit_blocks(
        document,
        lead_fits=lambda lead: _fits_alone(_lead(lead), titles),
        news_fits=lambda entry: _fits_alone(((_text(QUICK_NEWS_HEADER),), _bullet(entry)), titles),
        opening_fits=lambda section, index: _fits_alone(
            _section_blocks(document, section)[index].opening, titles
        ),
        message="Feishu message",
        drop_links=True,
    )
