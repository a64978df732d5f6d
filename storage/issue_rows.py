"""Translation between a content.model.Issue and the column values of the issue, section and item tables:
values to insert, and the Issue the rows of a SELECT hold."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Row

from content.model import Issue, Item, Link, QuickNews, Section


def issue_values(issue: Issue, source_text: str) -> dict[str, Any]:
    """The issue row's content columns: everything but the id and the timestamps."""
    return {
        "date": issue.date,
        "title": issue.title,
        "headline": issue.headline,
        "tagline": issue.tagline,
        "lead": issue.lead,
        "notes": list(issue.notes),
        "quick_news": [news.to_dict() for news in issue.quick_news],
        "references": [link.to_dict() for link in issue.references],
        "source_path": issue.source_path,
        "content_hash": issue.content_hash,
        "source_text": source_text,
    }


def section_values(issue_id: int, issue: Issue) -> list[dict[str, Any]]:
    return [
        {"issue_id": issue_id, "position": section.position, "name": section.name}
        for section in issue.sections
    ]


def item_values(issue_id: int, section_ids: Mapping[int, int], issue: Issue) -> list[dict[str, Any]]:
    """The item rows of every section; `section_ids` maps a section's position to its row id."""
    return [
        {
            "issue_id": issue_id,
            "section_id": section_ids[section.position],
            "position": item.position,
            "title": item.title,
            "source": item.source,
            "url": item.url,
            "tags": list(item.tags),
            "fields": dict(item.fields),
            "summary": item.summary,
            "links": [link.to_dict() for link in item.links],
        }
        for section in issue.sections
        for item in section.items
    ]


def issue_from_rows(
    issue_row: Row[Any], section_rows: Sequence[Row[Any]], item_rows: Sequence[Row[Any]]
) -> Issue:
    """The Issue the rows hold, with sections and items in the order the rows are given."""
    items_by_section: defaultdict[int, list[Item]] = defaultdict(list)
    for row in item_rows:
        items_by_section[row.section_id].append(_item(row))
    return Issue(
        date=issue_row.date,
        title=issue_row.title,
        headline=issue_row.headline,
        tagline=issue_row.tagline,
        lead=issue_row.lead,
        quick_news=tuple(QuickNews.from_dict(news) for news in issue_row.quick_news),
        notes=tuple(issue_row.notes),
        sections=tuple(
            Section(name=row.name, position=row.position, items=tuple(items_by_section[row.id]))
            for row in section_rows
        ),
        references=tuple(Link.from_dict(link) for link in issue_row.references),
        source_path=issue_row.source_path,
        content_hash=issue_row.content_hash,
    )


def _item(row: Row[Any]) -> Item:
    return Item(
        position=row.position,
        title=row.title,
        url=row.url,
        source=row.source,
        tags=tuple(row.tags),
        fields=dict(row.fields),
        summary=row.summary,
        links=tuple(Link.from_dict(link) for link in row.links),
    )
