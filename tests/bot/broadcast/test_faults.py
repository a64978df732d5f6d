"""The fault mix of the broadcast issue against the fakes: 429 with retry_after, 500s, dropped connections,
slow answers, blocked chats, SMTP 421/451/550. Every deliverable message arrives exactly once; blocked
chats and hard bounces end in their own states; nothing stays pending."""

from __future__ import annotations

from collections import Counter

from bot.broadcast.control import BroadcastControl, SendRequest
from bot.rendering import Renderer
from channels.telegram import render_telegram
from storage.broadcasts import BroadcastState, StartReport
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.subscribers import SubscriberStatus
from tests.bot.broadcast.conftest import DAY, World, chat_ids, emails, openid
from tests.fakes.faults import FaultPlan

SLOW = 2.5  # the fakes' slow answers; the worker gives up after send_timeout (1 s): "maybe delivered"


async def test_the_fault_mix_delivers_every_deliverable_message_exactly_once(world: World) -> None:
    await world.add(telegram=40, email=30, wechat=10)
    for n in range(10):
        await world.subscribers.seen("wechat", openid(n))
    blocked_chats = set(chat_ids(40)[:3])
    world.telegram.blocked.update(blocked_chats)
    world.telegram.faults(
        FaultPlan(
            seed=11,
            rates={"500": 0.08, "drop": 0.06, "slow": 0.04, "429": 0.05},
            slow_seconds=SLOW,
            max_per_key=3,
        )
    )
    bounced = set(emails(30)[:2])
    for address in bounced:
        world.smtp.refuse(address)
    world.smtp.fail(emails(30)[5], "421 4.7.0 Try again later", times=2)
    world.smtp.fail(emails(30)[6], "451 4.3.0 Mail server temporarily rejected message", times=1)
    world.smtp.faults(
        FaultPlan(
            seed=3,
            rates={"421": 0.05, "451": 0.05, "drop": 0.05, "slow": 0.03},
            slow_seconds=SLOW,
            max_per_key=2,
        )
    )
    world.wechat.faults(
        FaultPlan(
            seed=5,
            rates={"500": 0.1, "45009": 0.1, "drop": 0.1, "slow": 0.05},
            slow_seconds=SLOW,
            max_per_key=2,
        )
    )
    world.wechat.window_closed(openid(9))  # wrote to us, but WeChat says the window is closed (45015)

    settings = world.with_settings(send_timeout=1.0, bounce_limit=1, max_attempts=10)
    outcome = await BroadcastControl(settings, world.db).send(
        SendRequest(DAY, ("telegram", "email", "wechat"), wechat_text=True)
    )
    assert isinstance(outcome, StartReport)
    await world.run_worker(settings, seconds=90)

    rows = await DeliveryLedger(world.db).deliveries(outcome.broadcast.id)
    assert not [row for row in rows if row["state"] in ("pending", "sending")]
    control = BroadcastControl(settings, world.db)
    assert (await control.broadcasts.get(outcome.broadcast.id)).state == BroadcastState.DONE
    by_address = await _addresses(world)
    states = {(row["channel"], by_address.get(row["subscriber_id"])): row for row in rows}

    # Telegram: every part to every chat that is not blocked, exactly once; the blocked ones failed and
    # their subscribers are BLOCKED.
    issue = await IssueStore(world.db).get(DAY)
    assert issue is not None
    parts = [
        message.text for message in render_telegram(Renderer(settings).document(issue, "telegram")).messages
    ]
    delivered = world.telegram.delivered()
    for chat in chat_ids(40):
        expected = 0 if chat in blocked_chats else 1
        assert [delivered[(chat, text)] for text in parts] == [expected] * len(parts), chat
        row = states[("telegram", str(chat))]
        if chat in blocked_chats:
            assert row["state"] == "failed"
            assert row["last_error"].startswith("blocked: 403")
            subscriber = await world.subscribers.get("telegram", str(chat))
            assert subscriber is not None
            assert subscriber.status == SubscriberStatus.BLOCKED
        else:
            assert row["state"] == "sent"
            assert row["parts_done"] == len(parts)
    injected = Counter(fault for fault, _ in world.telegram.injected)
    assert injected["429"]
    assert injected["500"]
    assert injected["drop"]
    assert injected["slow"]
    uncertain_telegram = sum(row["uncertain"] for row in rows if row["channel"] == "telegram")
    assert uncertain_telegram == len({chat for fault, chat in world.telegram.injected if fault == "slow"})

    # Email: one mail per deliverable address; the refused ones bounced (limit 1) and failed.
    mails = Counter(recipient for recipient, _ in world.smtp.delivered().elements())
    for address in emails(30):
        row = states[("email", address)]
        if address in bounced:
            assert mails[address] == 0
            assert row["state"] == "failed"
            assert row["last_error"].startswith("bounced")
            subscriber = await world.subscribers.get("email", address)
            assert subscriber is not None
            assert subscriber.status == SubscriberStatus.BOUNCED
        else:
            assert mails[address] == 1, address
            assert row["state"] == "sent"
    assert {fault for fault, _ in world.smtp.injected} >= {"421", "451", "drop"}

    # WeChat: one mass send despite the faults; texts once to followers inside the window.
    assert len(world.wechat.mass_sends) == 1
    for n in range(9):
        assert len(world.wechat.texts_to(openid(n))) == 1, n
    assert world.wechat.texts_to(openid(9)) == []
    closed = states[("wechat", openid(9))]
    if ("slow", openid(9)) in world.wechat.injected:
        # The answer (45015) came after the timeout: all the worker knows is "maybe delivered".
        assert closed["state"] == "sent"
        assert closed["uncertain"]
    else:
        assert closed["state"] == "skipped"
        assert "45015" in closed["last_error"]


async def _addresses(world: World) -> dict[int, str]:
    everyone = await world.subscribers.list(limit=10_000)
    return {subscriber.id: subscriber.address for subscriber in everyone}
