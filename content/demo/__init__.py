"""The bundled demo content: 32 real issues of 嵌入式AI简报, with their attribution in README.md."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def demo_issue_dir() -> Path:
    """The folder of bundled issues (inside the installed package, so it works from any directory)."""
    return Path(str(files("content") / "demo" / "embedded-ai-report"))
