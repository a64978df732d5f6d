"""The `jianbao` console script, run as a subprocess: exit statuses, stdout, stderr and the JSON contracts.

Each run costs about a second, so the cases are few and the read-only ones share one database into which
the demo issues were imported once (the `demo_db` fixture). The many import cases are in test_importing.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from content.parser import parse_issue
from content.source import read_issue_file
from tests.bot.helpers import (
    BAD_FILES,
    DEMO_DATES,
    DEMO_DIR,
    DEMO_FILES,
    GOOD_DATES,
    copy_demo_issue,
    good_files,
    run_cli,
    sqlite_dates,
    sqlite_url,
)

# Wide enough that rich never wraps a line; the runs without it are in test_errors_are_one_line_at_any_width.
WIDE = 1_000

LIST_KEYS = {"date", "title", "headline", "items", "sections"}
ISSUE_KEYS = {"date", "title", "headline", "tagline", "lead", "quick_news", "sections"}
SECTION_KEYS = {"name", "items"}
ITEM_KEYS = {"title", "source", "url", "tags", "fields", "summary", "links"}
LINK_KEYS = {"text", "url"}

SHOWN_DATE = "2020-07-02"
SHOWN_SECTIONS = [("业界新闻", 5), ("论文", 4), ("开源项目", 5), ("博文", 4)]
SHOWN_FIRST_ITEM = "ARM宣布：GPU驱动支持独立更新"


def expected_list() -> list[dict[str, Any]]:
    """What `list --json` must print after `import --demo`: the parser's view of each file, newest first."""
    entries = []
    for path in reversed(DEMO_FILES):
        issue = parse_issue(read_issue_file(path))
        entries.append(
            {
                "date": issue.date.isoformat(),
                "title": issue.title,
                "headline": issue.headline,
                "items": issue.item_count,
                "sections": [
                    {"name": section.name, "items": len(section.items)} for section in issue.sections
                ],
            }
        )
    return entries


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """stderr is exactly one line, from jianbao, containing each fragment."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    [line] = lines
    assert line.startswith("jianbao: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


# --- import


def test_demo_import_creates_32_issues_and_a_second_run_changes_nothing(
    cli_database_url: str, tmp_path: Path
) -> None:
    first = run_cli("import", "--demo", database_url=cli_database_url, cwd=tmp_path)

    assert first.code == 0, first.stderr
    assert first.stderr == ""
    assert first.stdout.strip() == "imported 32 file(s): 32 new, 0 replaced, 0 unchanged; 0 failed"

    again = run_cli("import", "--demo", "--json", database_url=cli_database_url, cwd=tmp_path)

    assert again.code == 0, again.stderr
    assert again.stderr == ""
    report = json.loads(again.stdout)
    assert report["failed"] == []
    assert [entry["path"] for entry in report["imported"]] == [str(path) for path in DEMO_FILES]
    assert [entry["date"] for entry in report["imported"]] == DEMO_DATES
    assert [entry["outcome"] for entry in report["imported"]] == ["unchanged"] * 32

    listed = run_cli("list", "--json", database_url=cli_database_url, cwd=tmp_path)

    assert listed.code == 0, listed.stderr
    # 32 entries, no duplicates, and the same on both backends: what the parser read from the files.
    assert [{key: entry[key] for key in LIST_KEYS} for entry in json.loads(listed.stdout)] == expected_list()


def test_bad_files_are_each_reported_on_one_line_and_the_good_files_imported(tmp_path: Path) -> None:
    folder = tmp_path / "issues"
    good = good_files(folder)
    bad_paths = {bad.create(folder): bad for bad in BAD_FILES}
    database = tmp_path / "cli.db"

    result = run_cli("import", folder, database_url=sqlite_url(database), cwd=tmp_path, columns=WIDE)

    assert result.code == 1
    assert len(result.stderr_lines) == len(BAD_FILES), result.stderr
    for path, bad in bad_paths.items():
        [line] = [line for line in result.stderr_lines if f"{path}: " in line]
        assert line.startswith(f"jianbao: import: {path}: "), line
        assert bad.reason in line, line
    assert result.stdout.strip() == (
        f"imported {len(good)} file(s): {len(good)} new, 0 replaced, 0 unchanged; {len(BAD_FILES)} failed"
    )
    # Only the good files are stored; nothing of a bad file, even one whose title has a date.
    assert sqlite_dates(database) == list(GOOD_DATES)


def test_errors_are_one_line_at_any_width(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder-name-long-enough-that-the-error-is-longer-than-eighty-characters"
    copy_demo_issue(GOOD_DATES[0], folder)
    bad = BAD_FILES[0].create(folder)

    result = run_cli("import", folder, database_url=sqlite_url(tmp_path / "cli.db"), cwd=tmp_path)

    assert result.code == 1
    assert_one_error_line(result.stderr, str(bad), BAD_FILES[0].reason)


def test_a_missing_path_is_reported_and_the_other_paths_still_imported(tmp_path: Path) -> None:
    missing = tmp_path / "2030-03-01.md"
    present = copy_demo_issue(GOOD_DATES[0], tmp_path / "issues")
    database = tmp_path / "cli.db"

    result = run_cli(
        "import", missing, present, database_url=sqlite_url(database), cwd=tmp_path, columns=WIDE
    )

    assert result.code == 1
    line = assert_one_error_line(result.stderr, str(missing), "no such file or folder")
    assert line == f"jianbao: import: {missing}: no such file or folder"
    assert result.stdout.strip() == "imported 1 file(s): 1 new, 0 replaced, 0 unchanged; 1 failed"
    assert sqlite_dates(database) == [GOOD_DATES[0]]


def test_a_changed_file_is_replaced_and_shown_with_its_new_title(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    path = copy_demo_issue(SHOWN_DATE, tmp_path / "issues")
    assert run_cli("import", path, database_url=url, cwd=tmp_path).code == 0
    new_title = "ARM宣布：Mali GPU驱动可以独立更新了"
    path.write_text(path.read_text(encoding="utf-8").replace(SHOWN_FIRST_ITEM, new_title), encoding="utf-8")

    imported = run_cli("import", path, "--json", database_url=url, cwd=tmp_path)
    shown = run_cli("show", SHOWN_DATE, "--json", database_url=url, cwd=tmp_path)

    assert imported.code == 0, imported.stderr
    assert [(entry["date"], entry["outcome"]) for entry in json.loads(imported.stdout)["imported"]] == [
        (SHOWN_DATE, "replaced")
    ]
    assert shown.code == 0, shown.stderr
    issue = json.loads(shown.stdout)
    assert issue["sections"][0]["items"][0]["title"] == new_title
    assert [(section["name"], len(section["items"])) for section in issue["sections"]] == SHOWN_SECTIONS


def test_import_without_arguments_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("import", database_url=sqlite_url(tmp_path / "cli.db"), cwd=tmp_path)

    assert result.code == 2
    assert_one_error_line(result.stderr, "import", "--demo")
    assert result.stdout == ""


# --- list and show, on the demo issues


def test_list_json_gives_every_issue_newest_first(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("list", "--json", database_url=url, cwd=folder)

    assert result.code == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) == 32
    for entry in entries:
        assert entry.keys() >= LIST_KEYS
        assert entry["items"] == sum(section["items"] for section in entry["sections"])
        for section in entry["sections"]:
            assert section.keys() >= SECTION_KEYS
    assert [entry["date"] for entry in entries] == DEMO_DATES[::-1]
    assert [{key: entry[key] for key in LIST_KEYS} for entry in entries] == expected_list()


def test_list_prints_a_table_of_the_issues(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("list", database_url=url, cwd=folder)

    assert result.code == 0, result.stderr
    assert "32 issues" in result.stdout
    for date in DEMO_DATES:
        assert date in result.stdout
    positions = [result.stdout.index(date) for date in DEMO_DATES[::-1]]
    assert positions == sorted(positions)  # newest first


def test_show_json_gives_the_whole_issue_in_document_order(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("show", SHOWN_DATE, "--json", database_url=url, cwd=folder)

    assert result.code == 0, result.stderr
    issue = json.loads(result.stdout)
    assert issue.keys() >= ISSUE_KEYS
    assert issue["date"] == SHOWN_DATE
    assert issue["title"] == f"嵌入式AI简报 ({SHOWN_DATE})"
    assert isinstance(issue["quick_news"], list)
    assert issue["quick_news"]
    assert issue["lead"].startswith("本次18条")
    assert [(section["name"], len(section["items"])) for section in issue["sections"]] == SHOWN_SECTIONS
    for section in issue["sections"]:
        assert section.keys() >= SECTION_KEYS
        for item in section["items"]:
            assert item.keys() >= ITEM_KEYS
            assert isinstance(item["title"], str)
            assert item["title"]
            assert isinstance(item["tags"], list)
            assert isinstance(item["fields"], dict)
            assert isinstance(item["summary"], str)
            for link in item["links"]:
                assert link.keys() >= LINK_KEYS
                assert isinstance(link["text"], str)
                assert isinstance(link["url"], str)
    first = issue["sections"][0]["items"][0]
    assert (first["title"], first["source"], first["url"]) == (
        SHOWN_FIRST_ITEM,
        "安兔兔",
        "https://mp.weixin.qq.com/s/uAe-iZ9eIFcV1SD8XvG5FA",
    )
    paper = issue["sections"][1]["items"][0]
    assert paper["tags"] == ["2006.16669"]
    assert paper["fields"]["代码"] == "https://github.com/deepglint/EasyQuant"
    # Nothing lost or altered between the file and the JSON.
    assert issue == parse_issue(read_issue_file(DEMO_DIR / f"{SHOWN_DATE}.md")).to_dict()


def test_show_latest_gives_the_newest_issue(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("show", "latest", "--json", database_url=url, cwd=folder)

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["date"] == "2021-08-01" == max(DEMO_DATES)


def test_show_prints_the_sections_and_items(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("show", SHOWN_DATE, database_url=url, cwd=folder)

    assert result.code == 0, result.stderr
    assert f"嵌入式AI简报 ({SHOWN_DATE})" in result.stdout
    for name, count in SHOWN_SECTIONS:
        assert f"## {name} ({count})" in result.stdout
    assert SHOWN_FIRST_ITEM in result.stdout
    positions = [result.stdout.index(f"## {name} ") for name, _ in SHOWN_SECTIONS]
    assert positions == sorted(positions)


def test_show_a_date_without_an_issue_fails(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db

    result = run_cli("show", "1999-01-01", database_url=url, cwd=folder)

    assert result.code == 1
    assert_one_error_line(result.stderr, "no issue dated 1999-01-01")
    assert result.stdout == ""


def test_show_something_that_is_not_a_date_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("show", "2020-13-45", database_url=sqlite_url(tmp_path / "cli.db"), cwd=tmp_path)

    assert result.code == 2
    assert_one_error_line(result.stderr, "2020-13-45", "not a date")
    assert result.stdout == ""


# --- a database that cannot be used


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/jianbao", id="server_down"),
        pytest.param("sqlite:////dev/null/jianbao.db", id="sqlite_folder_impossible"),
    ],
)
def test_a_database_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path, url: str) -> None:
    result = run_cli("list", database_url=url, cwd=tmp_path, columns=WIDE)

    assert result.code == 1
    assert_one_error_line(result.stderr)
