"""The application's audience rule (topics through the issue and its glossary, WeChat's 48 h window) counted
in SQL gives what `start` then writes with the same rule, subscriber by subscriber."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import update

from bot.broadcast.audience import SKIP_TOPICS, audience
from channels.registry import channel_registry
from channels.wechat.channel import SKIP_WINDOW, WECHAT_WINDOW
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import BroadcastStore, DeliveryKind, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.subscribers import SubscriberStatus, SubscriberStore
from storage.tables import SubscriberRow, core_table
from tests.bot.broadcast.conftest import DAY, openid
from tests.bot.helpers import DEMO_DIR

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
ISSUE = parse_issue(read_issue_file(DEMO_DIR / f"{DAY}.md"))
REGISTRY = channel_registry()
CHANNELS = ("telegram", "email", "wechat")


def kinds(channel: str, options: Mapping[str, Any]) -> tuple[bool, bool]:
    plan = REGISTRY.get(channel).plan(options)
    return plan.direct, plan.mass


async def test_preview_of_the_real_rule_is_what_start_writes(db: Database) -> None:
    store = SubscriberStore(db, clock=lambda: NOW)
    topics: list[tuple[str, ...]] = [(), ("量化",), ("区块链",), ("ｎｃｎｎ", "区块链"), ("区块链", "元宇宙")]
    rows = [("telegram", str(1000 + n), topics[n % len(topics)]) for n in range(20)]
    rows += [("email", f"reader{n}@example.com", topics[n % len(topics)]) for n in range(10)]
    rows += [("wechat", openid(n), topics[n % len(topics)]) for n in range(10)]
    await store.import_active(rows)
    await store.set_status("telegram", "1000", SubscriberStatus.UNSUBSCRIBED)
    s = core_table(SubscriberRow)
    async with db.transaction("write") as connection:
        for n in range(10):  # every other follower wrote within the window; one exactly at its edge
            seen = NOW - (WECHAT_WINDOW if n == 0 else dt.timedelta(hours=1 if n % 2 == 0 else 72))
            await connection.execute(update(s).where(s.c.address == openid(n)).values(last_seen_at=seen))
    rule = audience(ISSUE, NOW, REGISTRY)
    broadcasts = BroadcastStore(db, clock=lambda: NOW)
    options = {"wechat_text": True}
    counts = await broadcasts.count_audience(CHANNELS, audience=rule, kinds=kinds, options=options)
    report = await broadcasts.start(DAY, CHANNELS, audience=rule, kinds=kinds, options=options)
    written: dict[str, dict[str, int]] = {}
    for row in await DeliveryLedger(db).deliveries(report.broadcast.id):
        if row["kind"] == DeliveryKind.MASS.value:
            continue
        key = "pending" if row["state"] == DeliveryState.PENDING.value else row["last_error"]
        channel = written.setdefault(row["channel"], {})
        channel[key] = channel.get(key, 0) + 1
    assert {
        channel: {"pending": count.pending, **count.skipped} for channel, count in counts.items()
    } == written
    # Of every five: no topics, 量化 and ｎｃｎｎ match the issue; 区块链 and 元宇宙 do not.
    assert written == {
        "telegram": {"pending": 11, SKIP_TOPICS: 8},  # 1000 (no topics) left
        "email": {"pending": 6, SKIP_TOPICS: 4},
        "wechat": {"pending": 3, SKIP_WINDOW: 5, SKIP_TOPICS: 2},
    }
    assert counts["wechat"].mass
