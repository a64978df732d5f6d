"""Turning the bytes of a newsletter file into text, refusing what is not an issue before parsing it.

Every refusal is an `IssueFormatError` (or `TooLarge`) whose one-line message names the reason; the
caller adds the file name. Checks run cheapest first so a 50 MB or binary file costs a `stat` or one scan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from content.errors import IssueFormatError, TooLarge

# The largest real issue is 36 KB. markdown-it-py needs up to ~10 µs per byte on pathological input
# (a line of 100,000 "["), so 256 KiB, seven times the largest issue, bounds a hostile file to a few
# seconds and ~100 MB while leaving real issues plenty of room (measured by scripts/hostile_inputs.py).
MAX_ISSUE_BYTES = 256 * 1024

# Bumped whenever the parser's output for the same bytes changes, so that re-importing an unchanged
# file after an upgrade re-parses it instead of being skipped as "unchanged".
PARSER_VERSION = "1"


@dataclass(frozen=True, slots=True)
class IssueSource:
    text: str
    content_hash: str
    path: str | None = None


def decode_issue(data: bytes, path: str | None = None) -> IssueSource:
    if len(data) > MAX_ISSUE_BYTES:
        raise TooLarge(f"file too large: {len(data):,} bytes (limit {MAX_ISSUE_BYTES:,})")
    if not data.strip():
        raise IssueFormatError("empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise IssueFormatError(f"binary file: NUL byte at offset {nul}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise IssueFormatError(f"not UTF-8: invalid byte 0x{bad:02x} at offset {exc.start}") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(PARSER_VERSION.encode() + b"\n" + data).hexdigest()
    return IssueSource(text=text, content_hash=digest, path=path)


def read_issue_file(path: Path) -> IssueSource:
    """Read one file, checking its size before reading so a huge file is never loaded."""
    try:
        size = path.stat().st_size
        if size > MAX_ISSUE_BYTES:
            raise TooLarge(f"file too large: {size:,} bytes (limit {MAX_ISSUE_BYTES:,})")
        with path.open("rb") as handle:
            # Read one byte past the limit: the file may grow between stat and read.
            data = handle.read(MAX_ISSUE_BYTES + 1)
    except IsADirectoryError:
        raise IssueFormatError("is a directory") from None
    except FileNotFoundError:
        raise IssueFormatError("no such file") from None
    except PermissionError:
        raise IssueFormatError("permission denied") from None
    return decode_issue(data, str(path))
