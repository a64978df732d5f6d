"""The console's home page (what a Git push brought in is marked new until someone previews it) and the
audit trail page."""

from __future__ import annotations

import re

from storage.audit import PAGE, AuditTrail, issue_subject
from storage.database import Database
from tests.bot.console.conftest import DAY, NAME, SignedIn


async def _record(
    console: SignedIn, count: int, actor: str, action: str, subject: str, detail: str = ""
) -> None:
    async with Database(console.database_url) as database:
        trail = AuditTrail(database)
        for _ in range(count):
            await trail.record(actor, action, subject, detail)


def _new_marks(html: str) -> list[str]:
    return re.findall(r'<a href="/console/issues/([\d-]+)">[\d-]+</a> <strong class="tag">新</strong>', html)


async def test_an_issue_a_push_imported_is_new_until_someone_previews_it(console: SignedIn) -> None:
    assert _new_marks(await console.page("/console")) == []
    await _record(console, 1, "git push", "import", issue_subject(DAY), "new")
    assert _new_marks(await console.page("/console")) == [DAY]
    await console.page(f"/console/issues/{DAY}")
    assert _new_marks(await console.page("/console")) == []
    await _record(console, 1, "git push", "import", issue_subject(DAY), "new")  # pushed again: new again
    assert _new_marks(await console.page("/console")) == [DAY]


async def test_the_audit_page_lists_newest_first_and_pages_back(console: SignedIn) -> None:
    await _record(console, PAGE + 5, NAME, "preview", issue_subject(DAY), "<b>not markup</b>")
    await _record(console, 1, "wang", "cancel", "broadcast 7", "2020-07-02")
    html = await console.page("/console/audit")
    rows = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td>", html)
    assert rows[0] == ("wang", "cancel")
    assert len(rows) == PAGE
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    older = re.search(r'<a href="(/console/audit\?before=\d+)">更早的记录</a>', html)
    assert older is not None
    rest = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td>", await console.page(older.group(1)))
    assert len(rest) == 6
    assert "更早的记录" not in await console.page(older.group(1))
    assert len(re.findall(r"<tr><td>", await console.page("/console/audit?before=abc"))) == PAGE
