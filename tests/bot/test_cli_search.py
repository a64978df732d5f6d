"""`jianbao search`: the JSON contract, the human list, and hostile queries end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bot.helpers import run_cli

HOSTILE = ["C++", "llama-3", "gpt-4o", "title:x", '"', "NOT", "*", "10%", "🚀", "", "量" * 10_000, "\\x00"]


def test_search_json_contract(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    result = run_cli("search", "量化", "--limit", "5", "--json", database_url=url, cwd=folder)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["query"] == "量化"
    assert len(data["results"]) == 5
    for hit in data["results"]:
        assert {"date", "section", "title", "url", "snippet", "score"} <= hit.keys()
        assert hit["url"] is None or hit["url"].startswith("http")
    scores = [hit["score"] for hit in data["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_human_output_lists_ranked_items(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    result = run_cli("search", "编译器", "--limit", "3", database_url=url, cwd=folder, columns=200)
    assert result.code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.lstrip()[:3] in (" 1.", "1. ", "2. ", "3. ")]
    assert len(lines) == 3
    assert "编译器" in result.stdout


def test_search_marks_words_as_the_archive_page_does(demo_db: tuple[str, Path]) -> None:
    """Styled (reverse in titles, bold yellow in snippets) are the words the search page would mark: not
    the lone digits of int8's expansions, nor the 化 of 量化 inside 优化 or 最大化. Wide, so that no
    marked word is split by a wrapped line."""
    url, folder = demo_db
    result = run_cli(
        "search",
        "量化",
        "--limit",
        "50",
        database_url=url,
        cwd=folder,
        columns=1000,
        environment={"FORCE_COLOR": "1"},
    )
    assert result.code == 0, result.stderr
    marked = [
        text
        for style, text in re.findall(r"\x1b\[([0-9;]*)m([^\x1b]*)", result.stdout)
        if {"7", "33"} & set(style.split(";"))
    ]
    assert marked.count("量化") >= 50
    assert {"Quantization", "int8", "二值化"} <= set(marked)
    assert [text for text in marked if re.fullmatch(r"[0-9A-Za-z]|化", text)] == []


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_fail(demo_db: tuple[str, Path], query: str) -> None:
    url, folder = demo_db
    result = run_cli("search", query.replace("\\x00", "\x01"), "--json", database_url=url, cwd=folder)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["results"] or data["hint"]


def test_limit_out_of_range_is_a_usage_error(demo_db: tuple[str, Path]) -> None:
    url, folder = demo_db
    result = run_cli("search", "量化", "--limit", "0", database_url=url, cwd=folder)
    assert result.code == 2
    assert result.stderr.strip() == "jianbao: search: --limit must be between 1 and 50, not 0"
