"""Packing an issue into chat messages, for every channel that splits it into several (Telegram, WeCom,
Feishu): what they share, with the channel's markup and its budget measure as parameters.

An issue is a list of blocks in document order (the header, the lead, the quick news, then each item with
its section); a message never splits a block. A block has two texts: the one it has when it follows
another block in the same message (after a separator), and the one it has when it starts a message: a
section's later items then repeat the section's name with "（续）". The blocks are packed greedily: each
message takes all the blocks it can, which gives the fewest messages for blocks that may not be
reordered. Before packing, whatever is too long for one message by itself (a summary, then its title,
then its link; the lead; a quick news line) is shortened until it fits alone.

A block's text is any type the channel joins itself: a string of markup (Telegram, WeCom) or a tuple of
rich-text paragraphs (Feishu). Sizes are the channel's own: `pack` only asks for the size of a message
started by a block and of a message grown by one, None when over the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from channels.document import IssueDocument, ItemBlock, SectionBlock, shorten_runs, shorten_text
from channels.fitting import DoesNotFit, non_empty

T = TypeVar("T")  # a block's text: markup, or paragraphs
S = TypeVar("S")  # a message's running size, in the channel's measure


@dataclass(frozen=True, slots=True)
class Block(Generic[T]):
    text: T  # when it follows another block in the same message
    opening: T  # when it starts a message (a section's later items repeat the section header)
    separator: T  # put before `text` when it follows another block


def issue_blocks(
    document: IssueDocument,
    *,
    header: T,
    lead: T | None,
    quick_news: list[Block[T]],
    section: Callable[[SectionBlock], list[Block[T]]],
    separator: T,
) -> list[Block[T]]:
    """The issue's blocks in document order: the header, a reader's "你关注的" block, the lead (each
    left out when empty), the quick news, then each section that has something to show."""
    shown = non_empty(document.sections)
    blocks = [Block(header, header, separator)] if header else []
    for each in shown:
        if each.focus:
            blocks += section(each)
    if lead:
        blocks.append(Block(lead, lead, separator))
    blocks += quick_news
    for each in shown:
        if not each.focus:
            blocks += section(each)
    return blocks


def pack(
    blocks: Sequence[Block[T]],
    *,
    start: Callable[[T, int], S | None],
    grow: Callable[[S, Block[T]], S | None],
) -> list[list[T]] | None:
    """Greedy packing in document order: each message as its parts (an opening, then separators and
    texts), or None when a block does not fit in a message by itself. `start(opening, index)` is the size
    of the index-th message begun with that opening, `grow(size, block)` the size with the block added
    after a separator; either is None when over the budget."""
    messages: list[list[T]] = []
    current: list[T] = []
    size: S | None = None
    for block in blocks:
        if current and size is not None:
            grown = grow(size, block)
            if grown is not None:
                current += [block.separator, block.text]
                size = grown
                continue
            messages.append(current)
        size = start(block.opening, len(messages))
        if size is None:
            return None
        current = [block.opening]
    if current:
        messages.append(current)
    return messages


def quick_news_blocks(
    header: T,
    bullets: Sequence[T],
    *,
    join: Callable[[T, T], T],
    fits_alone: Callable[[T], bool],
    separator: T,
    line_separator: T,
) -> list[Block[T]]:
    """One block under the header; one per line (after `line_separator`) when the whole list does not
    fit in a message by itself."""
    if not bullets:
        return []
    whole = header
    for bullet in bullets:
        whole = join(whole, bullet)
    if fits_alone(whole):
        return [Block(whole, whole, separator)]
    first = join(header, bullets[0])
    return [
        Block(first, first, separator),
        *(Block(bullet, bullet, line_separator) for bullet in bullets[1:]),
    ]


def section_blocks(
    header: T,
    continued: T,
    more: T | None,
    items: Sequence[T],
    *,
    join: Callable[[T, T], T],
    separator: T,
) -> list[Block[T]]:
    """A section's blocks: its header glued to its first item, each later item repeating `continued` when
    it starts a message, and `more` ("还有 N 条") after the last item (or alone under the header)."""
    if not items:
        text = join(header, more) if more is not None else header
        return [Block(text, text, separator)]
    blocks = []
    last = len(items) - 1
    for index, item in enumerate(items):
        text = join(item, more) if index == last and more is not None else item
        if index == 0:
            opening = join(header, text)
            blocks.append(Block(opening, opening, separator))
        else:
            blocks.append(Block(text, join(continued, text), separator))
    return blocks


def fit_blocks(
    document: IssueDocument,
    *,
    lead_fits: Callable[[str], bool],
    news_fits: Callable[[ItemBlock], bool],
    opening_fits: Callable[[SectionBlock, int], bool],
    message: str,
    drop_links: bool,
) -> IssueDocument:
    """Shorten what is too long for one message by itself: the lead, a quick news line, an item (see
    `fit_item`). `opening_fits(section, index)`: whether the index-th item's block, starting a message,
    fits. The real issues never need it; a 10,000-character summary does."""
    lead = document.lead
    if lead and not lead_fits(lead):
        whole = lead
        length = largest(lambda n: lead_fits(shorten_text(whole, n)), len(whole))
        lead = shorten_text(whole, length) if length > 0 else None
    quick_news = tuple(
        fit_item(entry, news_fits, message=message, drop_links=drop_links) for entry in document.quick_news
    )
    sections = []
    for section in document.sections:
        items = list(section.items)
        for index, item in enumerate(items):

            def fits(candidate: ItemBlock, index: int = index, section: SectionBlock = section) -> bool:
                trial = dataclasses.replace(
                    section, items=(*section.items[:index], candidate, *section.items[index + 1 :])
                )
                return opening_fits(trial, index)

            items[index] = fit_item(item, fits, message=message, drop_links=drop_links)
        sections.append(dataclasses.replace(section, items=tuple(items)))
    return dataclasses.replace(document, lead=lead, quick_news=quick_news, sections=tuple(sections))


def fit_item(
    item: ItemBlock, fits: Callable[[ItemBlock], bool], *, message: str, drop_links: bool
) -> ItemBlock:
    """The item with the longest summary, then the longest title, for which `fits` holds; with
    `drop_links`, without its link as a last resort (a link longer than the whole message limit).
    `message` names the channel's message in the DoesNotFit error."""
    if fits(item):
        return item
    summary_length = largest(
        lambda n: fits(dataclasses.replace(item, summary=shorten_runs(item.summary, n))),
        len(item.summary_text),
    )
    if summary_length >= 0:
        return dataclasses.replace(item, summary=shorten_runs(item.summary, summary_length))
    bare = dataclasses.replace(item, summary=())
    for candidate in (bare, dataclasses.replace(bare, url=None)) if drop_links else (bare,):

        def titled(length: int, candidate: ItemBlock = candidate) -> bool:
            return fits(dataclasses.replace(candidate, title=shorten_text(item.title, length)))

        title_length = largest(titled, len(item.title))
        if title_length >= 0:
            return dataclasses.replace(candidate, title=shorten_text(item.title, title_length))
    raise DoesNotFit(f"an item does not fit in one {message}: {item.title[:40]!r}")


def largest(fits: Callable[[int], bool], high: int) -> int:
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
