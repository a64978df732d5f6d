"""Every real issue parses, with the per-section item counts a person counted by reading the files.

expected_counts.json was written by hand from the Markdown (see corpus_oddities.md for the judgement
calls), never from the parser's output, so a parser regression shows up as a count mismatch.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file
from tests.content.corpus import SHARED_CORPUS, corpus_files

EXPECTED = json.loads((Path(__file__).parent / "expected_counts.json").read_text(encoding="utf-8"))
FILES = corpus_files()


def test_the_corpus_has_all_32_issues() -> None:
    assert len(FILES) == 32
    assert sorted(path.stem for path in FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_section_item_counts_match_a_careful_reading(path: Path) -> None:
    issue = parse_issue(read_issue_file(path))
    expected = EXPECTED[path.stem]
    assert issue.date.isoformat() == path.stem
    assert [[section.name, len(section.items)] for section in issue.sections] == expected["sections"]
    assert len(issue.quick_news) == expected["quick_news"]
    assert len(issue.references) == expected["references"]


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_first_item_of_each_section(path: Path) -> None:
    issue = parse_issue(read_issue_file(path))
    first = [
        [section.name, section.items[0].title, section.items[0].url]
        for section in issue.sections
        if section.items
    ]
    expected = EXPECTED[path.stem]["first_items"]
    assert [[name, url] for name, _, url in first] == [[name, url] for name, _, url in expected]
    for (_, title, _), (_, written, _) in zip(first, expected, strict=True):
        # The reader wrote the link text verbatim; the title is it without emphasis and " | SOURCE".
        assert title == re.split(r"\s*\|\s*(?=[^|]*$)", written.replace("**", ""))[0].strip()


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_every_item_has_a_title_and_every_url_is_absolute(path: Path) -> None:
    issue = parse_issue(read_issue_file(path))
    for section in issue.sections:
        for position, item in enumerate(section.items, start=1):
            assert item.position == position
            assert item.title
            assert item.title.strip() == item.title
            assert "**" not in item.title
            assert not item.title.endswith("|")
            assert item.url is None or item.url.startswith(("http://", "https://"))
            assert all(link.url for link in item.links)


def test_bundled_demo_copy_is_the_corpus() -> None:
    """The demo copy is byte for byte the published issues (checked against ../shared when present)."""
    bundled = {path.name: _sha256(path) for path in demo_issue_dir().glob("*.md")}
    if SHARED_CORPUS.is_dir():
        expected = {path.name: _sha256(path) for path in SHARED_CORPUS.glob("*.md")}
    else:
        sums = (demo_issue_dir().parent / "SHA256SUMS").read_text(encoding="utf-8").split("\n")
        expected = {name: digest for digest, name in (line.split() for line in sums if line.strip())}
    assert bundled == expected


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
