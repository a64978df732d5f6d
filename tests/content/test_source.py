"""Bytes that are not an issue are refused before parsing, with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from content.errors import IssueFormatError, TooLarge
from content.parser import parse_issue
from content.source import MAX_ISSUE_BYTES, decode_issue, read_issue_file

ISSUE = "# 嵌入式AI简报 (2021-01-05)\n\n## 论文\n\n- [量化 | 知乎](https://z.example/1)\n"


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", IssueFormatError, "empty file"),
        (b"  \n\t\n", IssueFormatError, "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", IssueFormatError, "binary file: NUL byte at offset 8"),
        (ISSUE.encode() + b"\x00", IssueFormatError, "binary file: NUL byte"),
        (ISSUE.encode("gbk"), IssueFormatError, r"not UTF-8: invalid byte 0x[0-9a-f]{2} at offset \d+$"),
        (b"- [" * (MAX_ISSUE_BYTES // 3 + 1), TooLarge, "file too large"),
    ],
)
def test_refused_bytes(data: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason) as caught:
        decode_issue(data)
    assert "\n" not in str(caught.value)


def test_bom_and_crlf_are_accepted() -> None:
    source = decode_issue(b"\xef\xbb\xbf" + ISSUE.replace("\n", "\r\n").encode())
    assert parse_issue(source).sections[0].items[0].title == "量化"


def test_hash_follows_the_bytes() -> None:
    first, again = decode_issue(ISSUE.encode()), decode_issue(ISSUE.encode())
    changed = decode_issue(ISSUE.replace("量化", "剪枝").encode())
    assert first.content_hash == again.content_hash != changed.content_hash
    assert len(first.content_hash) == 64


def test_a_50_mb_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.md"
    with path.open("wb") as handle:
        handle.write(b"- [" * 1000)
        handle.truncate(50 * 1024 * 1024)  # sparse: costs no disk, and is never read
    with pytest.raises(TooLarge, match="52,428,800 bytes"):
        read_issue_file(path)


def test_folder_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IssueFormatError, match="is a directory"):
        read_issue_file(tmp_path)
    with pytest.raises(IssueFormatError, match="no such file"):
        read_issue_file(tmp_path / "missing.md")


@pytest.mark.parametrize(
    "body",
    [
        "".join("  " * depth + "- x\n" for depth in range(400)),  # deeply nested bullets (160 KB)
        "> " * 20_000 + "- x\n",  # deeply nested quotes
        "- " + "[" * 60_000 + "\n",  # unclosed link openers
        "- " + "*a" * 30_000 + "\n",  # unclosed emphasis
    ],
    ids=["nested-lists", "nested-quotes", "brackets", "emphasis"],
)
def test_pathological_markdown_under_the_limit_parses_without_error(body: str) -> None:
    """maxNesting bounds the recursion; the size limit bounds the time (scripts/hostile_inputs.py)."""
    issue = parse_issue(decode_issue(f"# 嵌入式AI简报 (2021-01-05)\n\n## 论文\n\n{body}".encode()))
    assert [section.name for section in issue.sections] == ["论文"]
