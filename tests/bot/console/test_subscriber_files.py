"""The subscriber desk's files and figures through the real app (SQLite) and the real stores (SQLite and
PostgreSQL): a CSV's preview counts and line-numbered errors with nothing stored, the confirm step
importing exactly what was previewed and refusing a changed file, files refused as a whole, the export's
content, paging and formula guard, and the growth figures for a history set in the database."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import zoneinfo

from sqlalchemy import update

from bot.console.subscriber_files import EXPORT_PAGE, MAX_CSV_BYTES
from channels.registry import channel_registry
from storage.database import Database
from storage.subscriber_growth import SubscriberGrowth
from storage.subscribers import ImportOutcome, ImportRow, SubscriberStatus, SubscriberStore
from storage.tables import SubscriberRow, core_table
from tests.bot.console.conftest import CHATS, NAME, SignedIn

IMPORT = "/console/subscribers/import"
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")  # Settings' default zone, the console's days

# The header is line 1. Existing before the upload: the fixture's three Telegram chats (no topics),
# a@example.com (量化) and left@example.com, who unsubscribed.
CSV_TEXT = (
    "channel,address,topics\n"
    f"telegram,{CHATS[0]},\n"  # 2: unchanged (no topics given)
    f"telegram,{CHATS[1]},NPU\n"  # 3: changed: new topics
    "email,a@example.com,量化\n"  # 4: unchanged
    "email,new@example.com,量化\n"  # 5: new
    "email,not-an-email,\n"  # 6: bad address
    "nosuch,x,\n"  # 7: no such channel
    "email,left@example.com,\n"  # 8: left, kept out
    'email,"two\nlines@example.com",\n'  # 9-10: bad address over two lines
    "email,NEW@example.com,量化\n"  # 11: the same reader as line 5: unchanged once line 5 is in
    "telegram,=1+2,\n"  # 12: not a chat id
)
BAD_LINES = [6, 7, 9, 12]


async def _store(console: SignedIn) -> tuple[Database, SubscriberStore]:
    database = Database(console.database_url)
    await database.open()
    return database, SubscriberStore(database, keys=channel_registry().address_key)


async def _seed(console: SignedIn) -> None:
    database, store = await _store(console)
    try:
        await store.import_active([("email", "a@example.com", ["量化"]), ("email", "left@example.com", [])])
        await store.unsubscribe("email", "left@example.com")
    finally:
        await database.close()


async def _snapshot(console: SignedIn) -> list[tuple[str, str, str, tuple[str, ...]]]:
    database, store = await _store(console)
    try:
        rows = await store.list(limit=1000)
    finally:
        await database.close()
    return [(row.channel, row.address, row.status.value, row.topics) for row in rows]


async def _upload(console: SignedIn, data: bytes, status: int = 200) -> str:
    await console.page(IMPORT)
    response = await console.post(IMPORT, {"file": _file(data)})
    html = await response.text()
    assert response.status == status, html[:500]
    return html


def _file(data: bytes) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = "list.csv"
    return upload


def _counts(html: str) -> dict[str, int]:
    return {name: int(value) for name, value in re.findall(r'data-outcome="(\w+)">(\d+)<', html)}


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, html[:500]
    return found.group(1)


async def test_preview_counts_and_errors_then_confirm_imports_what_was_previewed(console: SignedIn) -> None:
    await _seed(console)
    before = await _snapshot(console)
    preview = await _upload(console, CSV_TEXT.encode())
    assert _counts(preview) == {"new": 1, "updated": 1, "unchanged": 3, "left": 1, "bad": 4}
    assert [int(line) for line in re.findall(r"<li>第 (\d+) 行：", preview)] == BAD_LINES
    assert "第 7 行：" in preview
    assert "nosuch" in preview
    assert await _snapshot(console) == before  # the preview stored nothing
    assert not [entry for entry in await console.audit() if entry.action == "import_subscribers"]

    console.field = re.findall(r'name="csrf_token" value="([^"]+)"', preview)[0]
    confirmed = await console.post(
        IMPORT,
        {"payload": _hidden(preview, "payload"), "tag": _hidden(preview, "tag"), "confirm": "yes"},
    )
    html = await confirmed.text()
    assert confirmed.status == 200, html[:500]
    assert "已导入：新增 1，更改 1，不变 3，已离开未恢复 1。" in html
    after = await _snapshot(console)
    assert ("email", "new@example.com", "active", ("量化",)) in after
    assert ("telegram", str(CHATS[1]), "active", ("NPU",)) in after
    assert ("email", "left@example.com", "unsubscribed", ()) in after
    assert len(after) == len(before) + 1
    [entry] = [entry for entry in await console.audit() if entry.action == "import_subscribers"]
    assert entry.actor == NAME
    assert entry.detail == "1 new, 1 updated, 3 unchanged, 1 left, 4 bad rows"
    assert "@" not in entry.detail
    assert "@" not in entry.subject


async def test_a_changed_confirm_is_refused_and_stores_nothing(console: SignedIn) -> None:
    preview = await _upload(console, CSV_TEXT.encode())
    before = await _snapshot(console)
    console.field = re.findall(r'name="csrf_token" value="([^"]+)"', preview)[0]
    other = CSV_TEXT.replace("new@example.com", "intruder@example.com").encode()
    for payload, tag in (
        (base64.b64encode(other).decode(), _hidden(preview, "tag")),  # another file, the preview's tag
        (_hidden(preview, "payload"), "0" * 64),  # the file, a made-up tag
        ("not base64!", _hidden(preview, "tag")),
    ):
        response = await console.post(IMPORT, {"payload": payload, "tag": tag, "confirm": "yes"})
        html = await response.text()
        assert response.status == 400, html[:500]
        assert "this is not the file that was previewed" in html
    assert await _snapshot(console) == before


async def test_files_refused_as_a_whole(console: SignedIn) -> None:
    cases = [
        ("channel,address\nemail,读者@example.com\n".encode("gb18030"), 400, "not UTF-8"),
        (b"channel,address,topics\n" + b"x" * MAX_CSV_BYTES, 413, "larger than"),
        (b"channel,address,topics\n\n", 400, "no subscriber rows"),
        (b"email,reader@example.com\n", 400, "must be the header channel,address,topics"),
        (b"", 400, "empty"),
    ]
    before = await _snapshot(console)
    for data, status, message in cases:
        html = await _upload(console, data, status=status)
        assert message in html, message
        assert "确认导入" not in html
    assert await _snapshot(console) == before


async def test_export_streams_every_page_with_filters_and_formula_guard(console: SignedIn) -> None:
    database, store = await _store(console)
    try:
        readers = [
            ImportRow("email", f"r{number:03}@example.com", ["量化"]) for number in range(EXPORT_PAGE + 50)
        ]
        await store.import_active([*readers, ImportRow("email", "=cmd@example.com", ["+1"])])
        await store.import_active(
            [("email", "other@example.com", ["NPU"]), ("telegram", "-100123", ["量化"])]
        )
    finally:
        await database.close()
    response = await console.client.get(
        "/console/subscribers/export.csv?channel=email&topic=%E9%87%8F%E5%8C%96"
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    body = (await response.read()).decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(body)))
    assert records[0] == ["channel", "address", "topics", "status", "created_at", "confirmed_at", "left_at"]
    addresses = [record[1] for record in records[1:]]
    assert addresses == [row.address for row in readers]  # every page, in id order, only the filter's

    everyone = await console.client.get("/console/subscribers/export.csv")
    rows = {
        record[1]: record for record in csv.reader(io.StringIO((await everyone.read()).decode("utf-8-sig")))
    }
    assert rows["'=cmd@example.com"][2] == "'+1"  # a spreadsheet reads text, not a formula
    assert rows["'-100123"][0] == "telegram"
    assert "=cmd@example.com" not in rows
    assert "other@example.com" in rows

    refused = await console.client.get("/console/subscribers/export.csv?status=gone")
    assert refused.status == 400
    exports = [entry for entry in await console.audit() if entry.action == "export_subscribers"]
    assert [entry.detail for entry in exports] == ["all", "channel=email topic=量化"]  # newest first
    assert all(entry.actor == NAME for entry in exports)


async def _set_times(
    database: Database, address: str, created: dt.datetime, left: dt.datetime | None = None
) -> None:
    s = core_table(SubscriberRow)
    async with database.transaction("write") as connection:
        await connection.execute(
            update(s).where(s.c.address == address).values(created_at=created, left_at=left)
        )


async def test_growth_page_counts_joins_and_leaves_per_day(console: SignedIn) -> None:
    today = dt.datetime.now(SHANGHAI).date()

    def at(days_ago: int) -> dt.datetime:  # noon in Shanghai, that many days ago
        return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), SHANGHAI).astimezone(
            dt.UTC
        )

    database, store = await _store(console)
    try:
        await store.import_active([("email", f"e{n}@example.com", []) for n in range(5)])
        await store.unsubscribe("email", "e4@example.com")
        for n in range(3):
            await _set_times(database, f"e{n}@example.com", at(10))
        await _set_times(database, "e3@example.com", at(5))
        await _set_times(database, "e4@example.com", at(5), left=at(3))
        for chat in CHATS:
            await _set_times(database, str(chat), at(20))
    finally:
        await database.close()
    html = await console.page("/console/growth?days=12")
    active = _table(html, "growth-active")
    assert active[0] == ["日期", "email", "Telegram"]  # the channels with subscribers, by name
    by_day = {row[0]: row[1:] for row in active[1:]}
    assert len(by_day) == 12

    def day(days_ago: int) -> str:
        return (today - dt.timedelta(days=days_ago)).isoformat()

    assert by_day[day(11)] == ["0", "3"]
    assert by_day[day(10)] == ["3", "3"]
    assert by_day[day(5)] == ["5", "3"]
    assert by_day[day(3)] == ["4", "3"]
    assert by_day[day(0)] == ["4", "3"]
    joined = {row[0]: row[1:] for row in _table(html, "growth-joined")[1:]}
    left = {row[0]: row[1:] for row in _table(html, "growth-left")[1:]}
    assert joined[day(10)] == ["3", "0"]
    assert joined[day(5)] == ["2", "0"]
    assert joined[day(4)] == ["0", "0"]
    assert left[day(3)] == ["1", "0"]
    assert sum(int(row[0]) for row in left.values()) == 1
    assert "console-charts.js" in html
    assert 'data-chart="time"' in html
    assert (await console.client.get("/console/growth?days=0", allow_redirects=False)).status == 400
    assert (await console.client.get("/console/growth?days=9999", allow_redirects=False)).status == 400
    assert (await console.client.get("/console/growth?days=%C2%B2", allow_redirects=False)).status == 400


def _table(html: str, table_id: str) -> list[list[str]]:
    found = re.search(rf'<table[^>]*id="{table_id}">(.*?)</table>', html, re.S)
    assert found is not None
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    ]


# --- the stores, on SQLite and PostgreSQL ---------------------------------------------------------------


async def test_plan_import_foretells_import_active(db: Database) -> None:
    store = SubscriberStore(db, keys=channel_registry().address_key)
    await store.import_active([("email", "a@example.com", ["量化"]), ("email", "gone@example.com", [])])
    await store.subscribe("email", "pending@example.com", confirmed=False)
    await store.unsubscribe("email", "gone@example.com")
    rows = [
        ImportRow("email", "a@example.com", ("量化",)),
        ImportRow("email", "A@example.com", ("NPU",)),
        ImportRow("email", "pending@example.com"),
        ImportRow("email", "gone@example.com"),
        ImportRow("email", "b@example.com"),
        ImportRow("email", "B@example.com"),
        ImportRow("email", "b@example.com", ("NPU",)),
    ]
    planned = await store.plan_import(rows)
    assert planned == [
        ImportOutcome.UNCHANGED,
        ImportOutcome.UPDATED,
        ImportOutcome.UPDATED,
        ImportOutcome.LEFT,
        ImportOutcome.NEW,
        ImportOutcome.UNCHANGED,
        ImportOutcome.UPDATED,
    ]
    assert await store.get("email", "b@example.com") is None  # planning wrote nothing
    assert await store.import_active(rows) == planned


async def test_growth_by_local_day_on_both_backends(db: Database) -> None:
    store = SubscriberStore(db)
    kolkata = zoneinfo.ZoneInfo("Asia/Kolkata")  # UTC+5:30: a day's end that is no whole hour
    await store.import_active([("email", name, []) for name in ("early", "late", "gone", "after")])
    await store.subscribe("email", "waiting", confirmed=False)
    await store.import_active([("telegram", "1", [])])
    await store.set_status("email", "gone", SubscriberStatus.BOUNCED)
    utc = dt.UTC
    await _set_times(db, "early", dt.datetime(2026, 1, 10, 18, 0, tzinfo=utc))  # 23:30 on the 10th there
    await _set_times(db, "late", dt.datetime(2026, 1, 10, 18, 30, tzinfo=utc))  # 00:00 on the 11th there
    await _set_times(
        db, "gone", dt.datetime(2026, 1, 8, 19, tzinfo=utc), left=dt.datetime(2026, 1, 11, 20, tzinfo=utc)
    )  # joined at 00:30 on the 9th there, before the window's start in UTC
    await _set_times(db, "after", dt.datetime(2026, 1, 20, tzinfo=utc))  # after the window
    await _set_times(db, "waiting", dt.datetime(2026, 1, 10, 12, tzinfo=utc))  # pending: counts nowhere
    await _set_times(db, "1", dt.datetime(2025, 12, 1, tzinfo=utc))

    growth = await SubscriberGrowth(db).daily(dt.date(2026, 1, 9), dt.date(2026, 1, 12), kolkata)
    assert growth.days == tuple(dt.date(2026, 1, day) for day in (9, 10, 11, 12))
    email = [(entry.active, entry.joined, entry.left) for entry in growth.channels["email"]]
    assert email == [(1, 1, 0), (2, 1, 0), (3, 1, 0), (2, 0, 1)]  # gone left at 01:30 on the 12th there
    assert [entry.active for entry in growth.channels["telegram"]] == [1, 1, 1, 1]


async def test_a_head_of_the_export_sends_headers_only_and_audits_nothing(console: SignedIn) -> None:
    head = await console.client.head("/console/subscribers/export.csv")
    assert head.status == 200
    assert head.headers["Content-Type"].startswith("text/csv")
    assert [entry for entry in await console.audit() if entry.action == "export_subscribers"] == []
    await console.client.get("/console/subscribers/export.csv")
    assert next(entry.action for entry in await console.audit()) == "export_subscribers"
