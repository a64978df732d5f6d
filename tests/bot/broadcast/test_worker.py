"""The worker against the fake platforms: every subscriber gets the issue once, on every channel."""

from __future__ import annotations

from collections import Counter

from bot.broadcast.control import BroadcastControl, SendRequest
from storage.broadcasts import BroadcastState, StartReport
from storage.deliveries import DeliveryLedger
from storage.links import LinkStore
from tests.bot.broadcast.conftest import DAY, THUMB, World, chat_ids, emails, openid


async def _start(world: World, *channels: str, wechat_text: bool = False) -> StartReport:
    outcome = await BroadcastControl(world.settings, world.db).send(
        SendRequest(DAY, tuple(channels), wechat_text=wechat_text)
    )
    assert isinstance(outcome, StartReport)
    return outcome


async def test_every_subscriber_gets_the_issue_once_on_every_channel(world: World) -> None:
    await world.add(telegram=5, email=4, wechat=2)
    for n in range(2):
        await world.subscribers.seen("wechat", openid(n))
    report = await _start(world, "telegram", "email", "wechat", wechat_text=True)
    assert report.pending == 5 + 4 + 1 + 2

    await world.run_worker()

    rows = await DeliveryLedger(world.db).deliveries(report.broadcast.id)
    assert Counter(row["state"] for row in rows) == {"sent": 12}
    broadcast = await world_broadcast(world, report)
    assert broadcast == BroadcastState.DONE
    # Telegram: each chat got the issue's messages, each once, in order.
    messages = world.telegram.delivered()
    parts = {chat: [params["text"] for params in world.telegram.sent_to(chat)] for chat in chat_ids(5)}
    assert len({tuple(texts) for texts in parts.values()}) == 1
    assert all(count == 1 for count in messages.values())
    first = next(iter(parts.values()))
    assert len(first) >= 2
    assert first[0].startswith("<b>嵌入式AI简报")
    # Email: one mail per address, personalised, with a one-click unsubscribe.
    delivered = world.smtp.delivered()
    assert sorted(recipient for recipient, _ in delivered) == sorted(emails(4))
    assert all(count == 1 for count in delivered.values())
    mail = world.smtp.messages[0].message
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://jianbao.example.com/unsubscribe/" in mail["List-Unsubscribe"]
    # WeChat: one draft and one mass send, plus a text to each follower inside the window.
    drafts = [call.payload for call in world.wechat.received if call.path.endswith("draft/add")]
    assert len(drafts) == 1
    assert drafts[0]["articles"][0]["thumb_media_id"] == THUMB
    assert len(world.wechat.mass_sends) == 1
    assert world.wechat.mass_sends[0].clientmsgid == f"jianbao-{DAY}-{report.broadcast.id}"
    assert all(len(world.wechat.texts_to(openid(n))) == 1 for n in range(2))
    # Tracking is off: no link was stored; the message ids are recorded.
    telegram_row = next(row for row in rows if row["channel"] == "telegram")
    assert telegram_row["message_id"].count(",") == len(first) - 1
    assert await LinkStore(world.db).find("x" * 16) is None


async def world_broadcast(world: World, report: StartReport) -> BroadcastState:
    control = BroadcastControl(world.settings, world.db)
    return (await control.broadcasts.get(report.broadcast.id)).state
