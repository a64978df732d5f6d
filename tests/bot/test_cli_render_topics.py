"""`jianbao render DATE --channel C --topics ...`: what a reader with those topics gets, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher
from content.parser import parse_issue
from content.source import read_issue_file
from tests.bot.helpers import DEMO_DIR, run_cli

DATE = "2020-07-02"
ISSUE = parse_issue(read_issue_file(DEMO_DIR / f"{DATE}.md"))


def test_a_reader_with_topics_gets_their_items_first(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    result = run_cli(
        "render",
        DATE,
        "--channel",
        "telegram",
        "--topics",
        "量化,剪枝",
        "--json",
        database_url=url,
        cwd=folder,
    )
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    focus = TopicMatcher(ISSUE).focus(("量化", "剪枝"))
    expected = [ISSUE.sections[at].items[index].title for at, index in focus]
    assert payload["reader"] == {"topics": ["量化", "剪枝"], "receives": True, "focus": expected}
    first = payload["messages"][0]["text"]
    block = first[
        first.index("【你关注的】") : first.index("热身小新闻")
        if "热身小新闻" in first
        else first.index("导读")
    ]
    for title in expected:
        assert title[:15] in block
    # Without --topics: the same command prints the issue as everyone gets it, with no reader part.
    plain = json.loads(
        run_cli("render", DATE, "--channel", "telegram", "--json", database_url=url, cwd=folder).stdout
    )
    assert "reader" not in plain
    assert "你关注的" not in json.dumps(plain, ensure_ascii=False)


def test_a_reader_whose_topics_the_issue_is_not_about_gets_nothing(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    result = run_cli(
        "render", DATE, "--channel", "email", "--topics", "区块链", "--json", database_url=url, cwd=folder
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "channel": "email",
        "date": DATE,
        "reader": {"topics": ["区块链"], "receives": False, "reason": SKIP_TOPICS},
    }


def test_bad_topics_get_one_line(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    for topics in ("x" * 10_000, ",".join(f"t{n}" for n in range(200)), "a\x07b"):
        result = run_cli(
            "render", DATE, "--channel", "email", "--topics", topics, database_url=url, cwd=folder
        )
        assert result.code == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("jianbao: render: --topics: ")
        assert len(lines[0]) < 200
