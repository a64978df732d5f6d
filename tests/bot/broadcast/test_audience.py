"""Who gets an issue: topics (literal or through the search glossary) and WeChat's 48 h window."""

from __future__ import annotations

import datetime as dt

from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher, audience
from channels.registry import channel_registry
from channels.wechat.channel import SKIP_WINDOW
from content.parser import parse_issue
from content.source import decode_issue, read_issue_file
from storage.broadcasts import Recipient
from tests.bot.helpers import DEMO_DIR

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
ISSUE = parse_issue(read_issue_file(DEMO_DIR / "2020-07-02.md"))


def _recipient(
    channel: str = "email", topics: tuple[str, ...] = (), seen: dt.datetime | None = None
) -> Recipient:
    return Recipient(subscriber_id=1, channel=channel, topics=topics, last_seen_at=seen)


def test_topics_match_literally_case_and_width_folded() -> None:
    matcher = TopicMatcher(ISSUE)
    assert matcher.matches("量化")
    assert matcher.matches("ｎｃｎｎ")  # full-width, any case
    assert not matcher.matches("区块链")


def test_a_topic_matches_through_the_glossary() -> None:
    # An issue whose only word for it is English still reaches a reader who chose the Chinese topic.
    english = parse_issue(
        decode_issue(
            "# 嵌入式AI简报 (2030-01-01)：测试\n\n## 论文\n\n"
            "- [Post-training quantization of LLMs | arXiv](https://arxiv.org/abs/2001.00001)\n".encode()
        )
    )
    assert TopicMatcher(english).matches("量化")
    assert not TopicMatcher(english).matches("剪枝")


def test_the_rule() -> None:
    rule = audience(ISSUE, NOW, channel_registry())
    assert rule(_recipient()) is None
    assert rule(_recipient(topics=("区块链", "量化"))) is None
    assert rule(_recipient(topics=("区块链",))) == SKIP_TOPICS
    assert rule(_recipient("wechat", seen=NOW - dt.timedelta(hours=47))) is None
    assert rule(_recipient("wechat", seen=NOW - dt.timedelta(hours=49))) == SKIP_WINDOW
    assert rule(_recipient("wechat")) == SKIP_WINDOW
