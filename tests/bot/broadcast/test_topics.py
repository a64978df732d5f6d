"""Readers with topics, through the worker and the fake platforms: each gets the issue with their own
"你关注的" block first, readers whose topics the issue is not about get nothing, readers without topics
get the issue as it is, and the worker renders once per distinct block, not per reader."""

from __future__ import annotations

import re
from collections import Counter

from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher
from bot.broadcast.control import BroadcastControl, SendRequest
from channels.document import FOCUS_SECTION
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import StartReport
from storage.deliveries import DeliveryLedger
from tests.bot.broadcast.conftest import DAY, World, chat_ids, emails
from tests.bot.helpers import DEMO_DIR

ISSUE = parse_issue(read_issue_file(DEMO_DIR / f"{DAY}.md"))


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
