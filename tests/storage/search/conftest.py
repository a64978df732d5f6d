"""One analyzer and one index of the bundled issues per test session: building them costs ~0.5 s."""

from __future__ import annotations

import pytest

from content.demo import demo_issue_dir
from content.model import Issue
from content.parser import parse_issue
from content.source import read_issue_file
from storage.search.index import SearchIndex
from storage.search.text import TextAnalyzer


@pytest.fixture(scope="session")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


@pytest.fixture(scope="session")
def demo_issues() -> list[Issue]:
    return [parse_issue(read_issue_file(path)) for path in sorted(demo_issue_dir().glob("*.md"))]


@pytest.fixture(scope="session")
def demo_index(analyzer: TextAnalyzer, demo_issues: list[Issue]) -> SearchIndex:
    index = SearchIndex(analyzer)
    index.replace_issues(demo_issues)
    return index
