"""The subscriber desk through the real app: search in keyset pages, one subscriber's history after a real
broadcast, status and topic changes, erasure (refused without the confirm box; afterwards a dump of the
database holds the address nowhere), and forms refused without the CSRF pair or a session."""

from __future__ import annotations

import asyncio
import re
import sqlite3

from sqlalchemy.engine import make_url

from bot.console.subscribers import PAGE
from channels.registry import channel_registry
from storage.database import Database
from storage.subscribers import Subscriber, SubscriberStatus, SubscriberStore
from tests.bot.console.conftest import CHATS, DAY, NAME, SignedIn

GONE, KEPT = str(CHATS[0]), str(CHATS[1])


async def _subscriber(console: SignedIn, channel: str, address: str) -> Subscriber | None:
    async with Database(console.database_url) as database:
        return await SubscriberStore(database, keys=channel_registry().address_key).get(channel, address)


async def _id(console: SignedIn, address: str) -> int:
    row = await _subscriber(console, "telegram", address)
    assert row is not None
    return row.id


def _dump(console: SignedIn) -> str:
    path = make_url(console.database_url).database
    assert path
    connection = sqlite3.connect(path)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def _addresses(html: str) -> list[str]:
    return re.findall(
        r'<tr><td><a href="/console/subscribers/\d+">#\d+</a></td><td>\w+</td><td>([^<]+)</td>', html
    )


async def test_search_pages_by_keyset_and_keeps_the_filters(console: SignedIn) -> None:
    async with Database(console.database_url) as database:
        store = SubscriberStore(database, keys=channel_registry().address_key)
        rows = [
            ("email", f"reader{number:03}@example.com", ["量化"] if number % 2 else [])
            for number in range(60)
        ]
        await store.import_active(rows)

    first = await console.page("/console/subscribers?q=READER&channel=email")
    assert len(_addresses(first)) == PAGE
    assert _addresses(first)[0] == "reader000@example.com"
    next_link = re.search(r'<a href="([^"]+)">下一页</a>', first)
    assert next_link is not None
    rest = await console.page(next_link.group(1).replace("&amp;", "&"))
    assert _addresses(rest) == [f"reader{number:03}@example.com" for number in range(PAGE, 60)]
    assert "下一页" not in rest

    topical = await console.page("/console/subscribers?topic=%E9%87%8F%E5%8C%96&q=reader00")
    assert _addresses(topical) == [f"reader00{number}@example.com" for number in (1, 3, 5, 7, 9)]
    anywhere = await console.page("/console/subscribers?q=example.com&match=contains&channel=email")
    assert len(_addresses(anywhere)) == PAGE
    assert _addresses(await console.page("/console/subscribers?channel=telegram")) == [str(c) for c in CHATS]
    bad = await console.page("/console/subscribers?status=gone", status=400)
    assert "status must be one of" in bad
    assert "page key" in await console.page("/console/subscribers?after=x1", status=400)


async def test_a_subscribers_page_shows_their_deliveries(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}/broadcast")
    started = await console.post(
        f"/console/issues/{DAY}/broadcast", [("channel", "telegram"), ("when", "now")]
    )
    assert started.status == 303
    html = ""
    for _ in range(200):
        html = await console.page(f"/console/subscribers/{await _id(console, KEPT)}")
        if '<span class="state">sent</span>' in html:
            break
        await asyncio.sleep(0.05)
    assert re.search(
        rf"<td>{DAY}</td><td>#\d+</td><td>telegram</td><td><span class=\"state\">sent</span>", html
    )
    assert f"<td>{KEPT}</td>" in html
    await console.page("/console/subscribers/999999", status=404)
    await console.page("/console/subscribers/abc", status=404)


async def test_an_editor_changes_status_and_topics_and_the_trail_says_so(console: SignedIn) -> None:
    subscriber_id = await _id(console, KEPT)
    page = f"/console/subscribers/{subscriber_id}"
    await console.page(page)

    blocked = await console.post(f"{page}/status", {"status": "blocked"})
    topics = await console.post(f"{page}/topics", {"topics": "量化, NPU 量化"})

    # The topics answer is the page itself: it says what the readers' vocabulary made of the words.
    assert (blocked.status, topics.status) == (303, 200)
    assert "已订阅：量化、npu" in await topics.text()
    row = await _subscriber(console, "telegram", KEPT)
    assert row is not None
    assert (row.status, row.topics) == (SubscriberStatus.BLOCKED, ("量化", "npu"))
    assert row.left_at is not None
    trail = [(e.actor, e.action, e.subject, e.detail) for e in await console.audit()]
    assert trail[:2] == [
        (NAME, "topics", f"subscriber {subscriber_id}", "量化 npu"),
        (NAME, "status", f"subscriber {subscriber_id}", "active → blocked"),
    ]
    html = await console.page(page)
    assert "active → blocked" in html

    wrong = await console.post(f"{page}/status", {"status": "deleted"})
    assert wrong.status == 400
    assert "status must be one of" in await wrong.text()
    too_long = await console.post(f"{page}/topics", {"topics": "量化 " * 400})
    assert too_long.status == 400
    assert "at most 20 topics" in await too_long.text()
    row = await _subscriber(console, "telegram", KEPT)
    assert row is not None
    assert (row.status, row.topics) == (SubscriberStatus.BLOCKED, ("量化", "npu"))
    assert len(await console.audit()) == len(trail)


async def test_erasing_needs_the_box_ticked_and_then_leaves_no_trace(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}")
    sent = await console.post(f"/console/issues/{DAY}/test-send", {"channel": "telegram", "address": GONE})
    assert sent.status == 200
    subscriber_id = await _id(console, GONE)
    page = f"/console/subscribers/{subscriber_id}"
    await console.page(page)
    assert f"→ {GONE}" in _dump(console)  # the test send's audit entry names the chat

    unticked = await console.post(f"{page}/erase", {})
    assert unticked.status == 400
    assert "tick the box" in await unticked.text()
    assert await _subscriber(console, "telegram", GONE) is not None

    erased = await console.post(f"{page}/erase", {"confirm": "yes"})
    assert erased.status == 303
    assert erased.headers["Location"] == f"/console/subscribers?erased={subscriber_id}"
    assert f"订阅者 #{subscriber_id} 已彻底删除" in await console.page(erased.headers["Location"])
    assert await _subscriber(console, "telegram", GONE) is None
    await console.page(page, status=404)
    dump = _dump(console)
    assert GONE not in dump
    assert KEPT in dump
    assert "[erased]" in dump
    entry = (await console.audit())[0]
    assert (entry.actor, entry.action, entry.subject, entry.detail) == (
        NAME,
        "erase",
        f"subscriber {subscriber_id}",
        "telegram",
    )


async def test_changes_without_the_csrf_pair_or_a_session_are_refused(console: SignedIn) -> None:
    subscriber_id = await _id(console, KEPT)
    page = f"/console/subscribers/{subscriber_id}"
    await console.page(page)
    console.field = "x" * 43
    for verb, fields in (("status", {"status": "blocked"}), ("erase", {"confirm": "yes"})):
        refused = await console.post(f"{page}/{verb}", fields)
        assert refused.status == 403, verb
    console.client.session.cookie_jar.clear()
    await console.page("/console/subscribers", status=303)
    anonymous = await console.client.post(f"{page}/erase", data={"confirm": "yes"}, allow_redirects=False)
    assert anonymous.status == 401
    row = await _subscriber(console, "telegram", KEPT)
    assert row is not None
    assert row.status == SubscriberStatus.ACTIVE
    assert await console.audit() == []
