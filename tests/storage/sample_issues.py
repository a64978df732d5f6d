"""Issues built straight from content.model, as the parser would produce them, for the storage tests."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace

from content.model import Issue, Item, Link, QuickNews, Section


def content_hash(source_text: str) -> str:
    return hashlib.sha256(source_text.encode("utf-8")).hexdigest()


def sample_issue(date: dt.date, *, edition: int = 1, items_per_section: int = 2) -> tuple[Issue, str]:
    """A fully populated issue and the Markdown it stands for; another `edition` changes the content."""
    source_text = f"# 嵌入式AI简报 ({date.isoformat()}) 第{edition}版\n\n正文 🚀\n"
    sections = (
        Section(
            name="新闻",
            position=1,
            items=tuple(
                Item(
                    position=n,
                    title=f"第{edition}版 新闻{n}：高通发布 AI 芯片 🤖",
                    url=f"https://example.com/news/{edition}/{n}",
                    source="机器之心",
                    tags=("芯片", "端侧"),
                    # Deliberately not in alphabetical order: the store must keep document order.
                    fields={
                        "链接": f"https://example.com/{n}",
                        "标题": "原文",
                        "代码": "https://github.com/x/y",
                    },
                    summary=f"**摘要** {n}：模型压缩到 4 bit，速度提升 3×。\n\n第二段，含 `code` 与 [链接](https://a.b)。",
                    links=(
                        Link(text="链接", url="https://a.b"),
                        Link(text="论文", url="https://arxiv.org/abs/1"),
                    ),
                )
                for n in range(1, items_per_section + 1)
            ),
        ),
        Section(
            name="论文",
            position=2,
            items=tuple(
                Item(position=n, title=f"Paper {n}", url=None, source=None, summary="")
                for n in range(1, items_per_section + 1)
            ),
        ),
        Section(name="空栏目", position=3),
    )
    issue = Issue(
        date=date,
        title=f"嵌入式AI简报 ({date.isoformat()})",
        headline=f"第{edition}版头条：端侧大模型",
        tagline="关注端侧 AI 的简报",
        lead="导读：本期有 **新闻** 与论文。",
        quick_news=(
            QuickNews(text="快讯一", url="https://example.com/q1"),
            QuickNews(
                text="快讯二 [详情](https://example.com/q2)", links=(Link("详情", "https://example.com/q2"),)
            ),
        ),
        notes=("注：本期内容来自网络。",),
        sections=sections,
        references=(Link(text="往期回顾", url="https://example.com/2019-01-01"),),
        source_path=f"content/demo/{date.isoformat()}.md",
        content_hash=content_hash(source_text),
    )
    return issue, source_text


def with_source(issue: Issue, source_text: str) -> tuple[Issue, str]:
    """`issue` re-hashed for a new source text."""
    return replace(issue, content_hash=content_hash(source_text)), source_text
