"""The send rates against a fake Bot API that enforces Telegram's flood limits: a 429 whenever more than 30
sendMessage calls are accepted in any trailing second, or two messages reach one chat within a second.

With the rate limits on as deployed (30/s shared by every worker, 1 s between the parts to one chat), no
message may be refused and every chat gets its issue once. On PostgreSQL two workers share the rate
(SharedRate, a row of the database); on SQLite the one worker uses LocalRate. How fast the rate is used
is measured by scripts/bench_broadcast_rate.py, not here: these tests assert no timing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from collections import Counter
from pathlib import Path

from bot.broadcast.control import BroadcastControl, SendRequest
from bot.broadcast.runtime import open_worker
from bot.importing import import_paths
from bot.rendering import Renderer
from bot.settings import Settings
from channels.telegram import render_telegram
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import BroadcastState, StartReport
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from tests.bot.broadcast.conftest import DAY, World, chat_ids
from tests.bot.helpers import DEMO_DIR, minimal_issue

ONE_MESSAGE_DAY = dt.date(2030, 1, 1)
CHATS = 120
MULTI_PART_CHATS = 6


def _workers(world: World) -> int:
    """Two workers sharing the rate through PostgreSQL; SQLite runs one worker."""
    return 2 if world.db.backend == "postgresql" else 1


def _limited(world: World) -> Settings:
    """Rate limits on, with the defaults a deployment has (30/s, 1 s per chat)."""
    defaults = Settings.model_fields
    settings = world.with_settings(
        rate_limits=True,
        telegram_rate=defaults["telegram_rate"].default,
        telegram_chat_interval=defaults["telegram_chat_interval"].default,
    )
    assert (settings.telegram_rate, settings.telegram_chat_interval) == (30.0, 1.0)
    return settings


async def _send(world: World, day: dt.date) -> StartReport:
    outcome = await BroadcastControl(world.settings, world.db).send(SendRequest(day, ("telegram",)))
    assert isinstance(outcome, StartReport)
    return outcome


async def _run_workers(world: World, settings: Settings, count: int, seconds: float = 60.0) -> int:
    """`count` workers on this database until nothing is left; the deliveries they sent."""

    async def one(number: int) -> int:
        async with open_worker(settings, world.db, name=f"rate-worker-{number}") as parts:
            await parts.worker.run(asyncio.Event(), until_idle=True)
            return parts.worker.sent

    # As `jianbao worker` does: what exists so far is frozen, out of the collector's reach. In this process
    # (all the tests so far, the fake on the same event loop) a full collection pauses everything for
    # 100+ ms, and the sends it holds up arrive together.
    gc.collect()
    gc.freeze()
    try:
        sent = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(count))), seconds)
    finally:
        gc.unfreeze()
    return sum(sent)


async def _finished(world: World, report: StartReport) -> Counter[str]:
    rows = await DeliveryLedger(world.db).deliveries(report.broadcast.id)
    broadcast = await BroadcastControl(world.settings, world.db).broadcasts.get(report.broadcast.id)
    assert broadcast.state == BroadcastState.DONE
    return Counter(row["state"] for row in rows)


async def test_workers_sharing_the_rate_get_no_429(world: World, tmp_path: Path) -> None:
    issue = tmp_path / f"{ONE_MESSAGE_DAY}.md"
    issue.write_text(minimal_issue(ONE_MESSAGE_DAY.isoformat()), encoding="utf-8")
    await import_paths([issue], IssueStore(world.db))
    await world.add(telegram=CHATS)
    fake = world.telegram
    fake.validate_html = False  # the fake shares this event loop: keep its work per message small
    fake.limit_rate(per_second=30, per_chat_seconds=1.0)
    report = await _send(world, ONE_MESSAGE_DAY)

    sent = await _run_workers(world, _limited(world), _workers(world))

    assert fake.throttled == 0
    assert sent == CHATS
    assert await _finished(world, report) == {"sent": CHATS}
    delivered = fake.delivered()
    assert sorted(chat for chat, _ in delivered) == chat_ids(CHATS)
    assert set(delivered.values()) == {1}
    assert fake.accepted_count == CHATS


async def test_the_parts_of_an_issue_keep_a_second_apart_in_each_chat(world: World) -> None:
    parts = render_telegram(
        Renderer(world.settings).document(parse_issue(read_issue_file(DEMO_DIR / f"{DAY}.md")), "telegram")
    ).messages
    assert len(parts) == 3
    await world.add(telegram=MULTI_PART_CHATS)
    fake = world.telegram
    fake.limit_rate(per_second=30, per_chat_seconds=1.0)
    report = await _send(world, DAY)

    await _run_workers(world, _limited(world), _workers(world))

    # The 1 s per chat rule refused nothing, and each chat got the three parts once, in order.
    assert fake.throttled == 0
    assert fake.errors == []
    assert await _finished(world, report) == {"sent": MULTI_PART_CHATS}
    for chat in chat_ids(MULTI_PART_CHATS):
        assert [params["text"] for params in fake.sent_to(chat)] == [part.text for part in parts]
