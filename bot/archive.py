"""What an issue page shows: its sections in order with the anchors channels and search results link to,
and every link of every item, rewritten as the web channel rewrites links.

`IssueDocument` carries an item's primary link only; an item's other links (paper, code...) are in
`Item.links`. They go through a LinkRewriter with the web channel's policy, so that with click tracking
they become /r/ links like the rest of the page, and the page stores them with the document's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.document import IssueDocument, ItemBlock
from channels.links import LinkPolicy, LinkRewriter, RewrittenLink
from content.model import Issue, Item

# The label of an item's primary link among its links (the title links to it as well).
PRIMARY_LABEL = "原文"


def section_anchor(section: int) -> str:
    """Channels link to these (IssueDocument.section_url): they must never change."""
    return f"section-{section}"


def item_anchor(section: int, position: int) -> str:
    return f"item-{section}-{position}"


@dataclass(frozen=True, slots=True)
class ShownLink:
    label: str
    host: str  # where the link leads, from the original URL: a tracking link hides it
    url: str  # as rendered: possibly a /r/ tracking link


@dataclass(frozen=True, slots=True)
class ShownItem:
    anchor: str
    block: ItemBlock
    links: tuple[ShownLink, ...]


@dataclass(frozen=True, slots=True)
class ShownSection:
    anchor: str
    name: str
    items: tuple[ShownItem, ...]


@dataclass(frozen=True, slots=True)
class IssueView:
    sections: tuple[ShownSection, ...]  # the sections with items, in the issue's order
    links: tuple[RewrittenLink, ...]  # the item links the document does not hold, to store with its own


def issue_view(issue: Issue, document: IssueDocument, policy: LinkPolicy) -> IssueView:
    rewriter = LinkRewriter(policy, issue.date)
    sections = []
    # build_document keeps every section and item in order, so positions line up with the issue's.
    for number, (section, block) in enumerate(zip(issue.sections, document.sections, strict=True), 1):
        items = tuple(
            ShownItem(item_anchor(number, position), shown, _links(item, rewriter))
            for position, (item, shown) in enumerate(zip(section.items, block.items, strict=True), 1)
        )
        if items:
            sections.append(ShownSection(section_anchor(number), block.name, items))
    return IssueView(tuple(sections), rewriter.links)


def _links(item: Item, rewriter: LinkRewriter) -> tuple[ShownLink, ...]:
    labels = {url.strip(): label for label, url in item.fields.items()}
    shown: dict[str, ShownLink] = {}  # by original URL: an item often lists its primary link twice
    for link in item.links:
        original = link.url.strip()
        rendered = rewriter.rewrite(original)
        if rendered is None or original in shown:
            continue
        if original == (item.url or "").strip():
            label = PRIMARY_LABEL
        else:
            label = labels.get(original) or (link.text if link.text.strip() != original else _host(original))
        shown[original] = ShownLink(label=label, host=_host(original), url=rendered)
    return tuple(shown.values())


def _host(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or parts.path or url).removeprefix("www.")
