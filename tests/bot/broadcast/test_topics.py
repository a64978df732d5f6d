"""Readers with topics, through the worker and the fake platforms: each gets the issue with their own
"你关注的" block first, readers whose topics the issue is not about get nothing, readers without topics
get the issue as it is, and the worker renders once per distinct block, not per reader."""

from __future__ import annotations

import json
import re
from collections import Counter

from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher
from bot.broadcast.control import BroadcastControl, SendRequest
from bot.rendering import Renderer
from channels.document import FOCUS_SECTION
from channels.registry import channel_registry
from channels.wecom.payload import WeComPayload
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import StartReport
from storage.deliveries import DeliveryLedger
from storage.subscribers import ImportRow, SubscriberStore
from tests.bot.broadcast.conftest import DAY, Robots, World, chat_ids, emails, wecom_key
from tests.bot.helpers import DEMO_DIR

ISSUE = parse_issue(read_issue_file(DEMO_DIR / f"{DAY}.md"))
CHANNELS = channel_registry()


def titles(*topics: str) -> list[str]:
    return [ISSUE.sections[at].items[index].title for at, index in TopicMatcher(ISSUE).focus(topics)]


def block_of(text: str) -> str:
    """The "你关注的" block of a Telegram message: from its heading to the next section's."""
    start = text.index(FOCUS_SECTION)
    return text[start : text.index("【", start + len(FOCUS_SECTION))]


async def test_each_reader_gets_their_own_block_and_off_topic_readers_nothing(world: World) -> None:
    chats = chat_ids(6)
    addresses = emails(2)
    await world.add(telegram=6, email=2)
    chosen = {
        chats[0]: ("量化",),
        chats[1]: ("剪枝",),
        chats[2]: ("量化", "tensorrt"),
        chats[3]: ("区块链",),  # not in this issue
        chats[4]: ("剪枝",),  # the same set as chats[1]: the same render
        # chats[5]: no topics
    }
    for chat, topics in chosen.items():
        assert await world.subscribers.set_topics("telegram", str(chat), topics)
    assert await world.subscribers.set_topics("email", addresses[0], ("quantization", "蒸馏"))

    outcome = await BroadcastControl(world.settings, world.db).send(SendRequest(DAY, ("telegram", "email")))
    assert isinstance(outcome, StartReport)
    parts = await world.run_worker()

    rows = await DeliveryLedger(world.db).deliveries(outcome.broadcast.id)
    assert Counter(row["state"] for row in rows) == {"sent": 7, "skipped": 1}
    skipped = next(row for row in rows if row["state"] == "skipped")
    assert skipped["last_error"] == SKIP_TOPICS
    assert world.telegram.sent_to(chats[3]) == []

    first = {chat: world.telegram.sent_to(chat)[0]["text"] for chat in chats if chat != chats[3]}
    for chat, topics in chosen.items():
        if chat == chats[3]:
            continue
        block = block_of(first[chat])
        expected = titles(*topics)
        assert expected, topics
        for title in expected:
            assert title[:20] in block
        # Only those: one numbered line per item about the reader's topics.
        assert len(re.findall(r"^\d+\. ", block, flags=re.MULTILINE)) == len(expected)
    assert FOCUS_SECTION not in first[chats[5]]
    assert block_of(first[chats[2]]) != block_of(first[chats[0]])
    # The whole issue follows the block: every section, in order.
    whole = "".join(params["text"] for params in world.telegram.sent_to(chats[0]))
    headings = [whole.index(f"<b>【{section.name}") for section in ISSUE.sections if section.items]
    assert headings == sorted(headings)
    assert whole.index(FOCUS_SECTION) < headings[0]

    mails = {mail.recipients[0]: mail.text for mail in world.smtp.messages}
    mail_text = mails[addresses[0]]
    assert mail_text.index(FOCUS_SECTION) < mail_text.index(f"【{ISSUE.sections[0].name}")
    for title in titles("量化"):
        assert title[:20] in mail_text[: mail_text.index(f"【{ISSUE.sections[0].name}")]
    assert FOCUS_SECTION not in mails[addresses[1]]

    # One plain render per channel, and one per distinct block: 量化 / 剪枝 / 量化+tensorrt on Telegram
    # (剪枝 twice is one), quantization+蒸馏 (= 量化's items) on email.
    assert parts.payloads.renders == 2 + 3 + 1


async def test_a_group_robot_with_topics_gets_the_issue_with_its_block(world: World, robots: Robots) -> None:
    """An editor set 剪枝 on one WeCom group and 区块链 on another (the console's subscriber page): the
    first group's messages are exactly the issue rendered with its block, the second gets nothing."""
    settings = robots.settings(world.settings, rate_limits=False)
    for n in (0, 1, 2):
        robots.wecom.add_robot(wecom_key(n))
    store = SubscriberStore(world.db, keys=CHANNELS.address_key)
    await store.import_active(
        [
            ImportRow("wecom", wecom_key(n), topics, None)
            for n, topics in ((0, ("剪枝",)), (1, ("区块链",)), (2, ()))
        ]
    )
    outcome = await BroadcastControl(settings, world.db).send(SendRequest(DAY, ("wecom",)))
    assert isinstance(outcome, StartReport)

    await world.run_worker(settings, seconds=45.0)

    renderer = Renderer(settings)
    focused = renderer.render(ISSUE, "wecom", focus=TopicMatcher(ISSUE).focus(("剪枝",))).payload
    plain = renderer.render(ISSUE, "wecom").payload
    assert isinstance(focused, WeComPayload)
    assert isinstance(plain, WeComPayload)
    assert robots.wecom.messages(wecom_key(0)) == [json.loads(json.dumps(body)) for body in focused.messages]
    assert FOCUS_SECTION in json.dumps(robots.wecom.messages(wecom_key(0))[0], ensure_ascii=False)
    assert robots.wecom.messages(wecom_key(1)) == []
    assert robots.wecom.messages(wecom_key(2)) == [json.loads(json.dumps(body)) for body in plain.messages]
