"""Section-aware truncation, written once for every channel.

When a payload must fit a budget, `fit` looks for the least trimmed document a channel can render
within it, trimming in this order (each step keeps everything the earlier steps kept):

1. the warm-up quick news go;
2. summaries are shortened (400, 200, 100, 50 characters), then dropped;
3. the lead is shortened, then dropped;
4. items are dropped one at a time from the end of the section that has the most items left (the
   longest text breaks ties), never a section's first item; each cut section then ends with
   "还有 N 条" linking to the full issue;
5. titles are shortened (60, 30, 12 characters).

Every step only shrinks the payload, so the steps form a monotone sequence and `fit` binary-searches
it: about five renders instead of thirty (and one when the whole document fits, the usual case).
Cuts happen on the document (whole runs, whole characters), before any markup exists, so no tag,
entity, link, surrogate pair or multi-byte character is ever split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from channels.document import IssueDocument, ItemBlock, SectionBlock, shorten_runs, shorten_text, with_items

T = TypeVar("T")

SUMMARY_STEPS = (400, 200, 100, 50, 0)
LEAD_STEPS = (120, 0)
TITLE_STEPS = (60, 30, 12)
MORE_TEMPLATE = "还有 {count} 条"


class DoesNotFit(ValueError):
    """Even the most trimmed document (one short title per section) is over the budget."""


@dataclass(frozen=True, slots=True)
class Trim:
    quick_news: bool = True
    summary_chars: int | None = None  # None: whole summaries
    lead_chars: int | None = None
    dropped: int = 0  # how many items of the drop order are gone
    title_chars: int | None = None


def more_line(count: int) -> str:
    return MORE_TEMPLATE.format(count=count)


def fit(document: IssueDocument, attempt: Callable[[IssueDocument], T | None]) -> tuple[T, IssueDocument]:
    """The payload of the least trimmed document for which `attempt` returns one (not None)."""
    whole = attempt(document)  # most issues fit whole: one render instead of a binary search
    if whole is not None:
        return whole, document
    plans = trim_plans(document)
    low, high = 1, len(plans) - 1
    best: tuple[T, IssueDocument] | None = None
    trimmed = apply_trim(document, plans[high])
    payload = attempt(trimmed)
    if payload is None:
        raise DoesNotFit("the budget is too small for one short title per section")
    best = (payload, trimmed)
    while low < high:  # invariant: plans[high] fits
        middle = (low + high) // 2
        trimmed = apply_trim(document, plans[middle])
        payload = attempt(trimmed)
        if payload is None:
            low = middle + 1
        else:
            high, best = middle, (payload, trimmed)
    return best


def trim_plans(document: IssueDocument) -> list[Trim]:
    plans = [Trim()]
    if document.quick_news:
        plans.append(Trim(quick_news=False))
    base = plans[-1]
    plans += [dataclasses.replace(base, summary_chars=chars) for chars in SUMMARY_STEPS]
    base = plans[-1]
    if document.lead:
        plans += [dataclasses.replace(base, lead_chars=chars) for chars in LEAD_STEPS]
        base = plans[-1]
    plans += [dataclasses.replace(base, dropped=count) for count in range(1, len(drop_order(document)) + 1)]
    base = plans[-1]
    plans += [dataclasses.replace(base, title_chars=chars) for chars in TITLE_STEPS]
    return plans


def drop_order(document: IssueDocument) -> list[int]:
    """Section indexes in the order their last remaining item is dropped (never a first item)."""
    kept = [len(section.items) for section in document.sections]
    weight = [
        sum(len(item.title) + len(item.summary_text) for item in section.items)
        for section in document.sections
    ]
    order: list[int] = []
    while True:
        candidates = [index for index, count in enumerate(kept) if count > 1]
        if not candidates:
            return order
        index = max(candidates, key=lambda at: (kept[at], weight[at], at))
        kept[index] -= 1
        order.append(index)


def apply_trim(document: IssueDocument, trim: Trim) -> IssueDocument:
    keep = [len(section.items) for section in document.sections]
    for index in drop_order(document)[: trim.dropped]:
        keep[index] -= 1
    sections = tuple(
        with_items(section, tuple(_trim_item(item, trim) for item in section.items[: keep[position]]))
        for position, section in enumerate(document.sections)
    )
    lead = document.lead
    if lead is not None and trim.lead_chars is not None:
        lead = shorten_text(lead, trim.lead_chars) if trim.lead_chars > 0 else None
    return dataclasses.replace(
        document,
        quick_news=document.quick_news if trim.quick_news else (),
        lead=lead,
        sections=sections,
    )


def _trim_item(item: ItemBlock, trim: Trim) -> ItemBlock:
    summary = item.summary if trim.summary_chars is None else shorten_runs(item.summary, trim.summary_chars)
    title = item.title if trim.title_chars is None else shorten_text(item.title, trim.title_chars)
    return dataclasses.replace(item, summary=summary, title=title)


def non_empty(sections: tuple[SectionBlock, ...]) -> tuple[SectionBlock, ...]:
    """The sections a payload shows: those with items, shown or omitted."""
    return tuple(section for section in sections if section.items or section.omitted)
