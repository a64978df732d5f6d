"""Where the tests find the real issues: ../shared/corpus when present, else the bundled demo copy."""

from __future__ import annotations

from pathlib import Path

from content.demo import demo_issue_dir

SHARED_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "embedded-ai-report"


def corpus_dir() -> Path:
    return SHARED_CORPUS if SHARED_CORPUS.is_dir() else demo_issue_dir()


def corpus_files() -> list[Path]:
    return sorted(corpus_dir().glob("*.md"))
