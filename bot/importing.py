"""Import newsletter files: each file parsed and saved on its own, a bad file reported and skipped.

Each file is one transaction (IssueStore.save), so a failure leaves that issue as it was and never
stops the other files. Only the errors a bad file can cause are caught; a database that goes away
ends the whole import, because every following file would fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

from content.errors import BadInput
from content.model import Issue
from content.parser import markdown_parser, parse_issue
from content.source import IssueSource, decode_issue, read_issue_file
from storage.issues import IssueStore

ISSUE_SUFFIX = ".md"


@dataclass(frozen=True, slots=True)
class ImportedFile:
    path: str
    date: str
    outcome: str  # created | replaced | unchanged
    items: int


@dataclass(frozen=True, slots=True)
class FailedFile:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    imported: list[ImportedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, outcome: str) -> int:
        return sum(1 for done in self.imported if done.outcome == outcome)


def issue_files(paths: Iterable[Path]) -> Iterator[Path | FailedFile]:
    """Files named directly, and every *.md below named folders (sorted, hidden folders skipped)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob(f"*{ISSUE_SUFFIX}")):
                relative = found.relative_to(path).parts
                if found.is_file() and not any(part.startswith(".") for part in relative):
                    yield found
        elif path.exists():
            yield path
        else:
            yield FailedFile(str(path), "no such file or folder")


def parse_source(name: str, data: bytes, md: MarkdownIt | None = None) -> tuple[Issue, IssueSource]:
    """Decode and parse the bytes of an issue file that is not on disk (a blob of a pushed commit).

    `name` stands for the file's path: the parser may take the issue's date from it. BadInput as
    `read_issue_file` and `parse_issue` raise it. Up to seconds of CPU on hostile input (MAX_ISSUE_BYTES):
    callers on the event loop run it in a thread.
    """
    source = decode_issue(data, name)
    return parse_issue(source, md), source


async def import_paths(paths: Iterable[Path], store: IssueStore) -> ImportReport:
    report = ImportReport()
    md = markdown_parser()
    for entry in issue_files(paths):
        if isinstance(entry, FailedFile):
            report.failed.append(entry)
            continue
        try:
            source = read_issue_file(entry)
            issue = parse_issue(source, md)
            outcome = await store.save(issue, source.text)
        except BadInput as exc:
            report.failed.append(FailedFile(str(entry), exc.message))
            continue
        report.imported.append(
            ImportedFile(str(entry), issue.date.isoformat(), str(outcome), issue.item_count)
        )
    return report
