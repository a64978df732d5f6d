"""Checks that an issue can be stored, run before any database work so that a bad issue writes nothing.

Each check is one the database would otherwise enforce late and differently per backend: PostgreSQL
rejects NUL characters in text that SQLite accepts, and a duplicate position would only show up as an
IntegrityError in the middle of a save.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from content.errors import BadInput
from content.model import Issue, Link

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def ensure_storable(issue: Issue, source_text: str) -> None:
    """Raise BadInput naming the first field that cannot be stored as given."""
    if not _SHA256_HEX.fullmatch(issue.content_hash):
        raise BadInput(f"issue {issue.date}: content_hash must be a sha256 digest in lowercase hex")
    for name, text in _texts(issue, source_text):
        _ensure_storable_text(issue, name, text)
    _ensure_unique_positions(issue)


def _ensure_storable_text(issue: Issue, name: str, text: str) -> None:
    if "\x00" in text:
        raise BadInput(
            f"issue {issue.date}: {name} contains a NUL character (\\u0000), which can't be stored"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadInput(
            f"issue {issue.date}: {name} has a lone surrogate at index {error.start}, which isn't UTF-8"
        ) from None


def _ensure_unique_positions(issue: Issue) -> None:
    section_positions: set[int] = set()
    for s, section in enumerate(issue.sections):
        if section.position in section_positions:
            raise BadInput(f"issue {issue.date}: sections[{s}] repeats section position {section.position}")
        section_positions.add(section.position)
        item_positions: set[int] = set()
        for i, item in enumerate(section.items):
            if item.position in item_positions:
                raise BadInput(
                    f"issue {issue.date}: sections[{s}].items[{i}] repeats item position {item.position}"
                )
            item_positions.add(item.position)


def _texts(issue: Issue, source_text: str) -> Iterator[tuple[str, str]]:
    """Every string the issue would store, with the name of the field it is in."""
    yield "source_text", source_text
    yield "title", issue.title
    yield from _optional("headline", issue.headline)
    yield from _optional("tagline", issue.tagline)
    yield from _optional("lead", issue.lead)
    yield from _optional("source_path", issue.source_path)
    for n, note in enumerate(issue.notes):
        yield f"notes[{n}]", note
    for q, news in enumerate(issue.quick_news):
        yield f"quick_news[{q}].text", news.text
        yield from _optional(f"quick_news[{q}].url", news.url)
        yield from _links(f"quick_news[{q}].links", news.links)
    yield from _links("references", issue.references)
    for s, section in enumerate(issue.sections):
        yield f"sections[{s}].name", section.name
        for i, item in enumerate(section.items):
            where = f"sections[{s}].items[{i}]"
            yield f"{where}.title", item.title
            yield from _optional(f"{where}.url", item.url)
            yield from _optional(f"{where}.source", item.source)
            for t, tag in enumerate(item.tags):
                yield f"{where}.tags[{t}]", tag
            for k, (key, value) in enumerate(item.fields.items()):
                yield f"{where}.fields key #{k}", key
                yield f"{where}.fields[{key!r}]", value
            yield f"{where}.summary", item.summary
            yield from _links(f"{where}.links", item.links)


def _optional(name: str, text: str | None) -> Iterator[tuple[str, str]]:
    if text is not None:
        yield name, text


def _links(name: str, links: tuple[Link, ...]) -> Iterator[tuple[str, str]]:
    for n, link in enumerate(links):
        yield f"{name}[{n}].text", link.text
        yield f"{name}[{n}].url", link.url
