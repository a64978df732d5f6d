"""Starting, watching and steering a broadcast from the console, with `serve`'s worker sending to the fakes."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

from storage.broadcasts import BroadcastState, BroadcastStore
from storage.database import Database
from tests.bot.console.conftest import CHATS, DAY, SignedIn


async def _broadcasts(console: SignedIn) -> list[tuple[int, BroadcastState]]:
    async with Database(console.database_url) as database:
        return [(broadcast.id, broadcast.state) for broadcast in await BroadcastStore(database).list()]


async def test_the_form_shows_the_audience_per_channel_before_sending(console: SignedIn) -> None:
    html = await console.page(f"/console/issues/{DAY}/broadcast")
    row = re.search(r'value="telegram" checked> Telegram</label></td>\s*<td class="num">([\d,]+)</td>', html)
    assert row is not None
    assert row.group(1) == str(len(CHATS))
    assert "群发给全部关注者" in html  # WeChat's mass send: one row, every follower
    assert await _broadcasts(console) == []


async def test_a_schedule_in_the_past_or_no_channel_is_refused_and_starts_nothing(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}/broadcast")
    past = await console.post(
        f"/console/issues/{DAY}/broadcast",
        [("channel", "telegram"), ("when", "later"), ("at", "2020-01-01T08:00")],
    )
    assert past.status == 400
    assert "is in the past" in await past.text()
    for fields, reason in (
        ([("when", "now")], "choose at least one channel"),
        ([("channel", "telegram"), ("when", "later"), ("at", "")], "give the time to send at"),
        ([("channel", "telegram"), ("when", "later"), ("at", "next tuesday")], "not a time"),
        ([("channel", "nosuch"), ("when", "now")], "nosuch"),
    ):
        refused = await console.post(f"/console/issues/{DAY}/broadcast", fields)
        assert refused.status == 400, reason
        assert reason in (await refused.text()).replace("&#39;", "'")
    assert await _broadcasts(console) == []


async def test_a_double_click_on_send_makes_one_broadcast_that_runs_to_done(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}/broadcast")
    fields = [("channel", "telegram"), ("when", "now")]
    first, second = await asyncio.gather(
        console.post(f"/console/issues/{DAY}/broadcast", fields),
        console.post(f"/console/issues/{DAY}/broadcast", fields),
    )
    assert first.status == second.status == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert len(await _broadcasts(console)) == 1
    page = first.headers["Location"]
    html = ""
    for _ in range(200):
        html = await console.page(f"{page}/progress")
        if "完成" in html:
            break
        await asyncio.sleep(0.05)
    assert 'class="state state-done">完成' in html
    assert "hx-trigger" not in html  # a finished broadcast stops polling
    assert all(len(console.telegram.sent_to(chat)) >= 2 for chat in CHATS)
    sends = [entry for entry in await console.audit() if entry.action == "send"]
    assert len(sends) == 1


async def test_a_scheduled_broadcast_waits_and_can_be_paused_resumed_and_cancelled(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}/broadcast")
    later = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    started = await console.post(
        f"/console/issues/{DAY}/broadcast", [("channel", "telegram"), ("when", "later"), ("at", later)]
    )
    assert started.status == 303
    page = started.headers["Location"]
    html = await console.page(page)
    assert "定时" in html
    assert 'hx-get="' in html
    assert "every 3s" in html
    assert '<noscript><meta http-equiv="refresh"' in html  # without JavaScript the page refreshes itself
    for verb, state in (("pause", "已暂停"), ("resume", "发送中"), ("cancel", "已取消")):
        moved = await console.post(f"{page}/{verb}", {})
        assert moved.status == 303, await moved.text()
        html = await console.page(page)
        assert f'">{state}</span>' in html
    again = await console.post(f"{page}/resume", {})
    assert again.status == 409
    assert "cannot be running" in await again.text()
    assert all(console.telegram.sent_to(chat) == [] for chat in CHATS)
    actions = [entry.action for entry in await console.audit()][:4]
    assert actions == ["cancel", "resume", "pause", "send"]
