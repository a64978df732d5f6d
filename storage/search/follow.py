"""Keeping a process's search index in step with the issue store.

The store is shared (other processes import and delete issues); each index remembers the content hash
of every issue it holds. `refresh` reads the store's (date, hash) list, one small query, and re-indexes
only the issues that are new or changed and drops the deleted ones: the watermark is the set of hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from content.model import Issue
from storage.issues import IssueStore
from storage.search.index import SearchIndex


@dataclass(frozen=True, slots=True)
class RefreshReport:
    indexed: int  # issues (re)indexed
    removed: int  # issues dropped
    items: int  # items in the index afterwards

    @property
    def changed(self) -> bool:
        return bool(self.indexed or self.removed)


async def refresh_index(index: SearchIndex, store: IssueStore) -> RefreshReport:
    stored = await store.versions()
    held = index.indexed
    removed = [date for date in held if date not in stored]
    wanted = sorted(date for date, content_hash in stored.items() if held.get(date) != content_hash)
    issues: list[Issue] = []
    for date in wanted:
        issue = await store.get(date)
        if issue is not None:  # deleted between the two reads: the next refresh drops it
            issues.append(issue)
    if issues or removed:
        index.replace_issues(issues, removed=removed)
    return RefreshReport(indexed=len(issues), removed=len(removed), items=index.size)
