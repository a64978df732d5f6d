"""The channel-neutral document: summaries as runs with rewritten links, counts kept."""

from __future__ import annotations

import datetime as dt

from channels.document import Run, build_document, markdown_runs, summary_parser
from channels.links import LinkPolicy, LinkRewriter
from content.model import Issue, Item, QuickNews, Section

DAY = dt.date(2021, 1, 5)


def rewriter() -> LinkRewriter:
    return LinkRewriter(LinkPolicy("test", public_url="https://jb.example"), DAY)


def test_markdown_runs_keep_links_lines_and_lists() -> None:
    runs = markdown_runs(
        "第一行 **加粗** [论文](https://arxiv.org/abs/1)  \n第二行 `code`\n\n1. 甲\n2. 乙\n    - 丙\n\n[空]() 和 [往期](../embedded-ai-report/2020-06-17.md)",
        rewriter(),
        summary_parser(),
    )
    assert runs == (
        Run("第一行 加粗 "),
        Run("论文", "https://arxiv.org/abs/1"),
        Run("\n"),
        Run("第二行 code"),
        Run("\n"),
        Run("1. 甲"),
        Run("\n"),
        Run("2. 乙"),
        Run("\n"),
        Run("  • 丙"),
        Run("\n"),
        Run("空 和 "),
        Run("往期", "https://jb.example/issues/2020-06-17"),
    )


def test_build_document_rewrites_every_link_once() -> None:
    issue = Issue(
        date=DAY,
        title="嵌入式AI简报 (2021-01-05)",
        lead="导读",
        quick_news=(QuickNews("快讯", "https://q.example/"),),
        sections=(
            Section(
                "论文",
                1,
                items=(Item(1, "甲", url="https://a.example/", summary="见 [乙](https://b.example/)"),),
            ),
            Section("博文", 2),
        ),
    )
    document = build_document(issue, rewriter())
    assert document.issue_url == "https://jb.example/issues/2021-01-05"
    assert [link.rendered for link in document.links] == [
        "https://a.example/",
        "https://b.example/",
        "https://q.example/",
    ]
    assert document.item_count == 1
    assert document.section_url(document.sections[1]) == "https://jb.example/issues/2021-01-05#section-2"
    assert document.quick_news[0].url == "https://q.example/"
