"""bot.importing.import_paths, in process, on SQLite and PostgreSQL: what is imported, replaced, refused."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from bot.importing import ImportReport, import_paths
from content.parser import parse_issue
from content.source import MAX_ISSUE_BYTES, read_issue_file
from storage.issues import IssueStore
from tests.bot.helpers import (
    BAD_FILES,
    DEMO_DATES,
    DEMO_DIR,
    DEMO_FILES,
    GOOD_DATES,
    BadFile,
    copy_demo_issue,
    deeply_nested_list,
    good_files,
    minimal_issue,
    write_huge_file,
)

EDITED_DATE = "2020-07-02"
FIRST_TITLE = "ARM宣布：GPU驱动支持独立更新"  # the first item of 2020-07-02, once in the file


async def stored_dates(store: IssueStore) -> list[str]:
    return sorted(summary.date.isoformat() for summary in await store.list())


def assert_one_line_failures(report: ImportReport) -> None:
    for failed in report.failed:
        assert len(str(failed).splitlines()) == 1, str(failed)
        assert "Traceback" not in str(failed)


# --- the demo issues


async def test_demo_issues_are_all_imported(store: IssueStore) -> None:
    report = await import_paths([DEMO_DIR], store)

    assert report.ok
    assert report.failed == []
    assert len(DEMO_FILES) == 32
    assert [Path(done.path) for done in report.imported] == DEMO_FILES
    assert [done.outcome for done in report.imported] == ["created"] * 32
    assert [done.date for done in report.imported] == DEMO_DATES
    assert await store.count() == 32
    summaries = await store.list()
    assert [summary.date.isoformat() for summary in summaries] == DEMO_DATES[::-1]
    # Each file's items all arrived, as the parser counts them.
    by_date = {summary.date.isoformat(): summary.item_count for summary in summaries}
    assert by_date == {done.date: done.items for done in report.imported}
    assert by_date == {path.stem: parse_issue(read_issue_file(path)).item_count for path in DEMO_FILES}


async def test_reimporting_the_same_files_changes_nothing(store: IssueStore) -> None:
    await import_paths([DEMO_DIR], store)
    before = await store.list()

    report = await import_paths([DEMO_DIR], store)

    assert report.ok
    assert [done.outcome for done in report.imported] == ["unchanged"] * 32
    assert await store.count() == 32
    # No duplicates, and not even rewritten: same hashes and timestamps.
    assert await store.list() == before


async def test_a_changed_file_replaces_its_issue(store: IssueStore, tmp_path: Path) -> None:
    path = copy_demo_issue(EDITED_DATE, tmp_path)
    await import_paths([path], store)
    before = await store.get(dt.date.fromisoformat(EDITED_DATE))
    assert before is not None
    assert before.sections[0].items[0].title == FIRST_TITLE
    text = path.read_text(encoding="utf-8")
    assert text.count(FIRST_TITLE) == 1
    path.write_text(text.replace(FIRST_TITLE, "ARM宣布：Mali GPU驱动可以独立更新了"), encoding="utf-8")

    report = await import_paths([path], store)

    assert report.ok
    assert [(done.date, done.outcome) for done in report.imported] == [(EDITED_DATE, "replaced")]
    assert await store.count() == 1
    after = await store.get(dt.date.fromisoformat(EDITED_DATE))
    assert after is not None
    assert after.sections[0].items[0].title == "ARM宣布：Mali GPU驱动可以独立更新了"
    assert after.item_count == before.item_count == 18
    assert after.content_hash != before.content_hash
    # Everything but that title is as it was.
    assert [section.name for section in after.sections] == [section.name for section in before.sections]
    assert [item.title for section in after.sections for item in section.items][1:] == [
        item.title for section in before.sections for item in section.items
    ][1:]


async def test_a_folder_is_searched_recursively_for_md_files_outside_hidden_folders(
    store: IssueStore, tmp_path: Path
) -> None:
    top = copy_demo_issue("2019-03-31", tmp_path)
    deeper = copy_demo_issue("2019-04-13", tmp_path / "2019" / "april")
    copy_demo_issue("2019-05-15", tmp_path / ".drafts")  # hidden: skipped
    copy_demo_issue("2019-05-30", tmp_path, "2019-05-30.txt")  # not *.md: skipped
    (tmp_path / "folder.md").mkdir()  # a folder named like an issue: skipped

    report = await import_paths([tmp_path], store)

    assert report.ok
    assert sorted(done.path for done in report.imported) == sorted([str(top), str(deeper)])
    assert await stored_dates(store) == ["2019-03-31", "2019-04-13"]


# --- files that are not issues


def test_the_issue_the_bad_files_are_made_from_is_valid(tmp_path: Path) -> None:
    """The bad files with a title break minimal_issue() in one way each; unbroken, it is an issue."""
    path = tmp_path / "2030-01-01.md"
    path.write_text(minimal_issue("2030-01-01"), encoding="utf-8")

    issue = parse_issue(read_issue_file(path))

    assert issue.date == dt.date(2030, 1, 1)
    assert [(section.name, len(section.items)) for section in issue.sections] == [
        ("业界新闻", 1),
        ("论文", 1),
    ]


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda bad: bad.name.removeprefix("m-").removesuffix(".md"))
async def test_a_bad_file_is_reported_and_the_good_files_are_still_imported(
    store: IssueStore, tmp_path: Path, bad: BadFile
) -> None:
    folder = tmp_path / "issues"
    good = good_files(folder)
    bad_path = bad.create(folder)

    report = await import_paths([folder], store)

    assert not report.ok
    assert [failed.path for failed in report.failed] == [str(bad_path)]
    [failed] = report.failed
    assert bad.reason in failed.reason
    assert str(failed).startswith(f"{bad_path}: ")
    assert_one_line_failures(report)
    assert [(done.path, done.outcome) for done in report.imported] == [
        (str(path), "created") for path in good
    ]
    assert await store.count() == len(good)
    assert await stored_dates(store) == list(GOOD_DATES)
    if bad.date is not None:
        assert await store.get(dt.date.fromisoformat(bad.date)) is None


async def test_a_huge_file_is_refused_by_its_size_without_being_read(
    store: IssueStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = tmp_path / "huge.md"
    write_huge_file(huge)
    read: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        return _CountingReader(handle, read) if self == huge else handle

    monkeypatch.setattr(Path, "open", counting_open)

    started = time.perf_counter()
    report = await import_paths([huge], store)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert [failed.path for failed in report.failed] == [str(huge)]
    assert "too large" in report.failed[0].reason
    assert sum(read) <= MAX_ISSUE_BYTES + 1
    assert await store.count() == 0


class _CountingReader:
    """A file object that adds the size of every read to `counts`."""

    def __init__(self, handle: Any, counts: list[int]) -> None:
        self._handle, self._counts = handle, counts

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self._counts.append(len(data))
        return data

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


HOSTILE_SECTIONS = {
    # Each inside a section of an otherwise valid issue, so that the parser walks into it.
    "list_markers": deeply_nested_list(),
    "blockquotes": ">" * 5_000 + " 最深的一层\n",
    # As deep as indentation gets within the size limit (sum of 2 * level bytes).
    "indentation": "".join(
        "  " * level + f"- [第{level}层](https://example.com/{level})\n" for level in range(450)
    ),
}


@pytest.mark.parametrize("body", HOSTILE_SECTIONS.values(), ids=HOSTILE_SECTIONS.keys())
async def test_deep_nesting_inside_a_section_is_handled_without_crashing(
    store: IssueStore, tmp_path: Path, body: str
) -> None:
    path = tmp_path / "deep.md"
    path.write_text(f"# 嵌入式AI简报 (2030-02-01)\n\n## 业界新闻\n\n{body}", encoding="utf-8")
    assert path.stat().st_size <= MAX_ISSUE_BYTES

    started = time.perf_counter()
    report = await import_paths([path], store)
    elapsed = time.perf_counter() - started

    # Whether such a file is an issue is the parser's call; it must be one clean outcome, quickly.
    assert elapsed < 2.0
    assert len(report.imported) + len(report.failed) == 1
    assert_one_line_failures(report)
    stored = await store.get(dt.date(2030, 2, 1))
    if report.imported:
        assert stored is not None
        assert stored.item_count == report.imported[0].items
    else:
        assert stored is None


# --- a broken new version of an issue already stored


def _no_sections(data: bytes) -> bytes:
    return data[: data.index(b"\n## ")] + b"\n"


def _with_nul(data: bytes) -> bytes:
    return data.replace(FIRST_TITLE.encode(), FIRST_TITLE.encode() + b"\x00")


def _not_utf8(data: bytes) -> bytes:
    return data.replace(FIRST_TITLE.encode(), FIRST_TITLE.encode("gbk"))


def _without_title(data: bytes) -> bytes:
    return data.replace(f"# 嵌入式AI简报 ({EDITED_DATE})".encode(), b"")


def _too_large(data: bytes) -> bytes:
    return data + b"\n" + b"- [" * (MAX_ISSUE_BYTES // 3)


BREAKAGES = {
    "no_sections": (_no_sections, "no sections"),
    "nul_byte": (_with_nul, "binary"),
    "not_utf8": (_not_utf8, "not UTF-8"),
    "no_title": (_without_title, "no title line"),
    "empty": (lambda _data: b"", "empty"),
    "too_large": (_too_large, "too large"),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
async def test_a_broken_new_version_leaves_the_stored_issue_intact(
    store: IssueStore, tmp_path: Path, breakage: tuple[Any, str]
) -> None:
    break_file, reason = breakage
    date = dt.date.fromisoformat(EDITED_DATE)
    path = copy_demo_issue(EDITED_DATE, tmp_path)
    await import_paths([path], store)
    before, before_source, before_list = (
        await store.get(date),
        await store.source_text(date),
        await store.list(),
    )
    assert before is not None
    assert before_source is not None
    original = path.read_bytes()
    broken = break_file(original)
    assert broken != original
    path.write_bytes(broken)

    report = await import_paths([path], store)

    assert report.imported == []
    assert [failed.path for failed in report.failed] == [str(path)]
    assert reason in report.failed[0].reason
    after = await store.get(date)
    assert after is not None
    assert after.to_dict() == before.to_dict()  # same content_hash, titles, items...
    assert await store.source_text(date) == before_source
    assert await store.list() == before_list  # ...and not even touched: same updated_at


# --- paths that are not there


async def test_a_missing_path_is_reported_and_the_other_paths_are_still_imported(
    store: IssueStore, tmp_path: Path
) -> None:
    missing_file = tmp_path / "2030-03-01.md"
    missing_folder = tmp_path / "no-such-folder"
    first = copy_demo_issue("2019-03-31", tmp_path / "issues")
    folder = tmp_path / "more"
    copy_demo_issue("2019-04-13", folder)

    report = await import_paths([missing_file, first, missing_folder, folder], store)

    assert [(failed.path, failed.reason) for failed in report.failed] == [
        (str(missing_file), "no such file or folder"),
        (str(missing_folder), "no such file or folder"),
    ]
    assert_one_line_failures(report)
    assert [done.date for done in report.imported] == ["2019-03-31", "2019-04-13"]
    assert await stored_dates(store) == ["2019-03-31", "2019-04-13"]
