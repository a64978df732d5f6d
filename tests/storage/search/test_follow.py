"""The index follows the store, and gives the same answers whether the store is SQLite or PostgreSQL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from content.model import Issue
from storage.issues import IssueStore
from storage.search.follow import refresh_index
from storage.search.index import SearchIndex
from storage.search.text import TextAnalyzer
from tests.conftest import fresh_database

QUERIES = [
    "量化",
    "剪枝",
    "NPU",
    "ncnn",
    "编译器",
    "int8",
    "端侧",
    "芯片",
    "模型",
    "low-bit quantization",
    "編譯器",
]


async def test_same_results_on_sqlite_and_postgresql(
    tmp_path: Path, analyzer: TextAnalyzer, demo_issues: list[Issue]
) -> None:
    answers = {}
    for backend in ("sqlite", "postgres"):
        async with fresh_database(backend, tmp_path) as database:
            await database.migrate()
            store = IssueStore(database)
            for issue in demo_issues:
                await store.save(issue, issue.title)
            index = SearchIndex(analyzer)
            report = await refresh_index(index, store)
            assert (report.indexed, report.removed, report.items) == (32, 0, 541)
            answers[backend] = {
                query: [hit.to_dict() for hit in index.search(query, limit=20).hits] for query in QUERIES
            }
    assert answers["sqlite"] == answers["postgres"]
    assert all(answers["sqlite"].values())


async def test_refresh_follows_new_changed_and_deleted_issues(
    store: IssueStore, analyzer: TextAnalyzer, demo_issues: list[Issue]
) -> None:
    first, second = demo_issues[0], demo_issues[1]
    await store.save(first, "x")
    index = SearchIndex(analyzer)
    assert (await refresh_index(index, store)).indexed == 1
    assert not (await refresh_index(index, store)).changed  # nothing new: nothing re-indexed

    await store.save(second, "y")
    renamed_item = dataclasses.replace(first.sections[0].items[0], title="全新的标题：稀有词汇甲乙丙")
    section = dataclasses.replace(first.sections[0], items=(renamed_item, *first.sections[0].items[1:]))
    changed = dataclasses.replace(first, sections=(section, *first.sections[1:]), content_hash="f" * 64)
    await store.save(changed, "x2")
    report = await refresh_index(index, store)
    assert (report.indexed, report.removed) == (2, 0)
    assert [hit.title for hit in index.search("稀有词汇甲乙丙").hits] == [renamed_item.title]
    assert index.size == first.item_count + second.item_count

    await store.delete(second.date)
    report = await refresh_index(index, store)
    assert (report.indexed, report.removed, report.items) == (0, 1, first.item_count)
    assert all(hit.date != second.date for hit in index.search("芯片", limit=50).hits)
