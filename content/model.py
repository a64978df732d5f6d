"""The newsletter's content model: Issue -> Section -> Item, and the links they carry.

Pure data with no I/O: the parser builds it, storage saves and loads it, channels render it.
`Issue.to_dict()` is the JSON contract of `jianbao show --json` that later parts rely on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Link:
    """A Markdown link (or a bare URL the parser linkified) with its visible text."""

    text: str
    url: str

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "url": self.url}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Link:
        return cls(text=str(data["text"]), url=str(data["url"]))


@dataclass(frozen=True, slots=True)
class QuickNews:
    """A warm-up bullet before the first section: plain text, possibly linked."""

    text: str
    url: str | None = None
    links: tuple[Link, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "url": self.url, "links": [link.to_dict() for link in self.links]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuickNews:
        return cls(
            text=str(data["text"]),
            url=data.get("url"),
            links=tuple(Link.from_dict(link) for link in data.get("links", [])),
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a section: a news story, a paper, a project or a post."""

    position: int
    title: str
    url: str | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()
    # Labelled lines such as 标题/代码/论文/链接/网站, in document order.
    fields: dict[str, str] = field(default_factory=dict)
    summary: str = ""  # Markdown
    links: tuple[Link, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "tags": list(self.tags),
            "fields": dict(self.fields),
            "summary": self.summary,
            "links": [link.to_dict() for link in self.links],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(
            position=int(data["position"]),
            title=str(data["title"]),
            url=data.get("url"),
            source=data.get("source"),
            tags=tuple(data.get("tags", ())),
            fields=dict(data.get("fields", {})),
            summary=str(data.get("summary", "")),
            links=tuple(Link.from_dict(link) for link in data.get("links", [])),
        )


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    position: int
    items: tuple[Item, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "items": [item.to_dict() for item in self.items],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Section:
        return cls(
            name=str(data["name"]),
            position=int(data["position"]),
            items=tuple(Item.from_dict(item) for item in data.get("items", [])),
        )


@dataclass(frozen=True, slots=True)
class Issue:
    date: dt.date
    title: str
    headline: str | None = None
    tagline: str | None = None
    lead: str | None = None  # the 导读 text, Markdown; None when the issue has no 导读 at all
    quick_news: tuple[QuickNews, ...] = ()
    notes: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()
    # Links of the 往期回顾 archive: this issue's references to other issues.
    references: tuple[Link, ...] = ()
    source_path: str | None = None
    content_hash: str = ""

    @property
    def item_count(self) -> int:
        return sum(len(section.items) for section in self.sections)

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "title": self.title,
            "headline": self.headline,
            "tagline": self.tagline,
            "lead": self.lead,
            "quick_news": [news.to_dict() for news in self.quick_news],
            "notes": list(self.notes),
            "sections": [section.to_dict() for section in self.sections],
            "references": [link.to_dict() for link in self.references],
            "source_path": self.source_path,
            "content_hash": self.content_hash,
            "item_count": self.item_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Issue:
        return cls(
            date=dt.date.fromisoformat(str(data["date"])),
            title=str(data["title"]),
            headline=data.get("headline"),
            tagline=data.get("tagline"),
            lead=data.get("lead"),
            quick_news=tuple(QuickNews.from_dict(news) for news in data.get("quick_news", [])),
            notes=tuple(str(note) for note in data.get("notes", [])),
            sections=tuple(Section.from_dict(section) for section in data.get("sections", [])),
            references=tuple(Link.from_dict(link) for link in data.get("references", [])),
            source_path=data.get("source_path"),
            content_hash=str(data.get("content_hash", "")),
        )
