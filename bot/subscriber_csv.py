"""Subscriber lists as CSV, one reading and one writing for the command line (`jianbao subscribers
import|export`) and the console's import and export (bot/console/subscriber_files.py).

Reading: the whole text is parsed before anything is written, so a file that is not CSV at all changes
nothing. The first line is the header (`channel` and `address` required, `topics`, `secret` and an
export's `status` read when present, in any order); every other record is a row, or a bad row with its
line number and the reason (an address the channel refuses, a topic too long, a record the csv module
cannot read). An export's rows of people who left (unsubscribed, blocked, bounced) are passed over, so
re-importing an export brings nobody back.

Writing: CSV_COLUMNS, the first three what an editor writes. The secret some channels keep with an address
(a Feishu robot's signing secret) is read but never written: a subscriber list is passed around more
freely than a secret should be.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from channels.registry import ChannelRegistry
from content.errors import BadInput
from storage.subscribers import ImportRow, Subscriber, normalise_topics

CSV_COLUMNS = ("channel", "address", "topics", "status", "created_at", "confirmed_at", "left_at")
REQUIRED_COLUMNS = ("channel", "address")
# Statuses of an export's rows that an import reads (an empty cell, or no status column, is "active").
IMPORTED_STATUSES = ("", "active", "pending")
# What a spreadsheet takes for a formula at the start of a cell (and tab and CR, which some strip first).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class NotUtf8(BadInput):
    """The file's bytes are not UTF-8 text."""


class NotCsv(BadInput):
    """The file is empty or its first line is not CSV."""


class WrongHeader(BadInput):
    """The first line is not the header (the command line exits 2 for it: the caller's mistake)."""


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    rows: tuple[tuple[int, ImportRow], ...]  # (first line of the record, row), in file order
    bad: tuple[tuple[int, str], ...]  # (line, reason)


def decode_csv(data: bytes) -> str:
    """The text of an uploaded or read file; utf-8-sig: what Excel saves as "CSV UTF-8" starts with a BOM."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotUtf8("the file is not UTF-8 text") from None


def parse_subscriber_csv(text: str, channels: ChannelRegistry) -> ParsedCsv:
    """The good and the bad rows of a subscriber CSV (see the module's docstring); NotCsv or WrongHeader
    when the file as a whole cannot be read."""
    # newline="", as for a file: the csv module sees the line ends as they are (quoted newlines too).
    lines = list(_csv_records(csv.reader(io.StringIO(text, newline=""))))
    if not lines or isinstance(lines[0][1], str):
        raise NotCsv("the file is empty or its first line is not CSV")
    header = [name.strip().lower() for name in lines[0][1]]
    if any(name not in header for name in REQUIRED_COLUMNS):
        raise WrongHeader("the first line must be the header channel,address,topics")
    rows: list[tuple[int, ImportRow]] = []
    bad: list[tuple[int, str]] = []
    for line, record in lines[1:]:
        if isinstance(record, str):
            bad.append((line, record))
            continue
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not rows
        if len(record) != len(header):
            bad.append((line, f"{len(record)} columns where the header has {len(header)}"))
            continue
        cells = dict(zip(header, (cell.strip() for cell in record), strict=True))
        if cells.get("status", "active").lower() not in IMPORTED_STATUSES:
            continue  # an export's unsubscribed, blocked and bounced rows stay out
        channel = cells["channel"].lower()
        try:
            address = channels.check_address(channel, cells["address"])
            secret = channels.get(channel).check_secret(cells.get("secret") or None)
            topics = normalise_topics([cells.get("topics", "")])
            rows.append((line, ImportRow(channel, address, topics, secret)))
        except BadInput as exc:
            bad.append((line, exc.message))
    return ParsedCsv(tuple(rows), tuple(bad))


def _csv_records(reader: Any) -> Iterator[tuple[int, list[str] | str]]:
    """(first line, cells) per record, or (line, reason) for a record the csv module cannot read."""
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, f"not CSV: {exc}"
        else:
            yield line, record
        line = reader.line_num + 1


def subscriber_record(row: Subscriber) -> dict[str, Any]:
    """A subscriber as the exports write it (JSON as it is; CSV through `csv_cells`)."""

    def moment(value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat(timespec="seconds")

    return {
        "id": row.id,
        "channel": row.channel,
        "address": row.address,
        "status": str(row.status),
        "topics": list(row.topics),
        "created_at": moment(row.created_at),
        "confirmed_at": moment(row.confirmed_at),
        "left_at": moment(row.left_at),
    }


def csv_cells(row: Subscriber, *, guard_formulas: bool = False) -> list[str]:
    """One CSV record of CSV_COLUMNS. With `guard_formulas` (a file for a spreadsheet, downloaded from the
    console), a cell a spreadsheet would run as a formula gets a leading ' (OWASP's CSV injection rule);
    the command line's export stays exact, since it is what `import` reads back."""
    record = subscriber_record(row)
    cells = [";".join(row.topics) if name == "topics" else record[name] or "" for name in CSV_COLUMNS]
    return [neutralise_formula(cell) for cell in cells] if guard_formulas else cells


def neutralise_formula(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_text(records: Iterable[Iterable[str]]) -> str:
    """Records as CSV text with \\n line ends, the way the exports write them."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue()
