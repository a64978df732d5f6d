"""Readers choose their topics on WeChat: `订阅 量化` adds topics (subscribing the reader), `退订 量化` takes
one off, `我的订阅` lists them, `订阅` alone goes back to every issue. Driven over /wechat as WeChat drives
it, on the demo archive, the topics checked in the database. One app serves the module; every test uses
openids of its own."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.topics import MAX_REQUEST_CHARS, SHOWN_WORDS
from bot.wechat.dialog import ALREADY_SUBSCRIBED, HELP, NOT_SUBSCRIBED, SUBSCRIBED
from storage.subscribers import MAX_TOPICS, SubscriberStatus
from tests.bot.wechat_helpers import (
    WeChatService,
    assert_fits,
    copy_database,
    running_service,
    wechat_demo_db,
)
from tests.fakes.wechat_api import running_fake_wechat

__all__ = ["wechat_demo_db"]  # a fixture, used by name

pytestmark = pytest.mark.asyncio(loop_scope="module")

_openids = (f"oTopicReader{number:016d}" for number in itertools.count())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, wechat_demo_db: Path
) -> AsyncIterator[WeChatService]:
    folder = tmp_path_factory.mktemp("wechat_topics")
    async with (
        running_fake_wechat() as fake,
        running_service(copy_database(wechat_demo_db, folder), fake) as service,
    ):
        yield service


@pytest.fixture
def reader() -> str:
    return next(_openids)


async def topics_of(service: WeChatService, openid: str) -> tuple[str, ...] | None:
    subscriber = await service.services.subscribers.get("wechat", openid)
    return None if subscriber is None else subscriber.topics


async def test_subscribe_to_a_topic_list_it_and_take_it_off(service: WeChatService, reader: str) -> None:
    reply = await service.say("订阅 量化", openid=reader)
    assert SUBSCRIBED in reply
    assert "已订阅：量化" in reply
    assert await service.status(reader) == SubscriberStatus.ACTIVE
    assert await topics_of(service, reader) == ("量化",)

    reply = await service.say("我的订阅", openid=reader)
    assert f"你关注的话题（1/{MAX_TOPICS}）：量化" in reply
    assert await service.say("我的话题", openid=reader) == reply
    assert await service.say("topics", openid=reader) == reply

    reply = await service.say("退订 量化", openid=reader)
    assert "已退订：量化" in reply
    assert "每期都会收到完整的简报" in reply
    assert await topics_of(service, reader) == ()
    # Taking the last topic off leaves the reader subscribed, to every issue.
    assert await service.status(reader) == SubscriberStatus.ACTIVE


async def test_several_topics_with_any_separator_and_english_spellings(
    service: WeChatService, reader: str
) -> None:
    reply = await service.say("订阅 quantization，剪枝、蒸馏", openid=reader)
    assert "已订阅：量化、剪枝、蒸馏" in reply
    assert await topics_of(service, reader) == ("量化", "剪枝", "蒸馏")
    # The English word is the same topic: nothing new, and 退订 takes it off by either name.
    reply = await service.say("subscribe 量化", openid=reader)
    assert "没有变化" in reply
    assert await topics_of(service, reader) == ("量化", "剪枝", "蒸馏")
    await service.say("退订 Quantization", openid=reader)
    assert await topics_of(service, reader) == ("剪枝", "蒸馏")


async def test_an_unknown_word_gets_suggestions_and_stores_nothing(
    service: WeChatService, reader: str
) -> None:
    reply = await service.say("订阅 xyzzyq", openid=reader)
    assert "『xyzzyq』没有订上" in reply
    assert "试试：" in reply
    assert SUBSCRIBED not in reply
    assert await topics_of(service, reader) is None  # not even subscribed by a typo
    # A subscriber's topics stay as they were too.
    await service.say("订阅 剪枝", openid=reader)
    reply = await service.say("订阅 xyzzyq", openid=reader)
    assert "试试：" in reply
    assert await topics_of(service, reader) == ("剪枝",)


async def test_subscribe_alone_clears_the_topics_and_lists_what_it_cleared(
    service: WeChatService, reader: str
) -> None:
    await service.say("订阅 量化 剪枝", openid=reader)
    reply = await service.say("订阅", openid=reader)
    assert "已清除你的话题：量化、剪枝" in reply
    assert await topics_of(service, reader) == ()
    assert await service.say("订阅", openid=reader) == ALREADY_SUBSCRIBED


async def test_unsubscribe_alone_still_stops_everything_and_topics_need_a_subscription(
    service: WeChatService, reader: str
) -> None:
    assert await service.say("我的订阅", openid=reader) == NOT_SUBSCRIBED
    assert await service.say("退订 量化", openid=reader) == NOT_SUBSCRIBED
    await service.say("订阅 量化", openid=reader)
    await service.say("退订", openid=reader)
    assert await service.status(reader) == SubscriberStatus.UNSUBSCRIBED
    assert await service.say("我的订阅", openid=reader) == NOT_SUBSCRIBED
    # Coming back with a topic starts afresh: the old topic is not brought back with the new one.
    await service.say("订阅 剪枝", openid=reader)
    assert await topics_of(service, reader) == ("剪枝",)


async def test_a_reader_without_topics_is_told_they_get_everything(
    service: WeChatService, reader: str
) -> None:
    await service.say("订阅", openid=reader)
    reply = await service.say("我的订阅", openid=reader)
    assert "每期都会收到完整的简报" in reply
    assert "可以试试：" in reply  # the popular topics of the last issues


async def test_help_mentions_the_topic_commands_and_searches_are_not_commands(
    service: WeChatService, reader: str
) -> None:
    reply = await service.say("帮助", openid=reader)
    assert reply == HELP
    for command in ("订阅 量化", "退订 量化", "我的订阅"):
        assert command in reply
    # Without a separator it is a search, answered on the fast path, and it subscribes nobody.
    reply = await service.say("订阅号", openid=reader)
    assert "订阅号" in reply
    assert await service.status(reader) is None


async def test_more_topics_than_the_cap_store_the_cap_and_say_so(service: WeChatService, reader: str) -> None:
    labels = service.services.topics.labels
    assert len(labels) > MAX_TOPICS
    reply = await service.say("订阅 " + " ".join(labels), openid=reader)
    assert f"每人最多 {MAX_TOPICS} 个话题" in reply
    assert await topics_of(service, reader) == labels[:MAX_TOPICS]
    assert_fits(reply)


@pytest.mark.parametrize(
    "words",
    [
        "量化 " * 200,  # 200 topics: over MAX_REQUEST_CHARS
        "x" * 10_000,
        " ".join(f"t{number}" for number in range(200)),
    ],
    ids=["200-topics", "10000-chars", "200-words"],
)
async def test_a_request_too_long_is_refused_whole_within_the_limit(
    service: WeChatService, reader: str, words: str
) -> None:
    reply = await service.say("订阅 " + words, openid=reader)
    assert f"一次最多 {MAX_REQUEST_CHARS} 个字" in reply
    assert f"每人最多 {MAX_TOPICS} 个话题" in reply
    assert_fits(reply)
    assert await topics_of(service, reader) is None


async def test_two_hundred_refused_words_are_listed_five_at_most(service: WeChatService, reader: str) -> None:
    # One-character words are no topics; 200 different ones fit in a request.
    words = " ".join(chr(0x4E00 + number) for number in range(200))
    assert len(words) <= MAX_REQUEST_CHARS
    reply = await service.say("订阅 " + words, openid=reader)
    assert reply.count("没有订上：") == SHOWN_WORDS
    assert f"另有 {200 - SHOWN_WORDS} 个词没有订上" in reply
    assert_fits(reply)
    assert await topics_of(service, reader) is None


async def test_a_word_repeated_is_refused_once(service: WeChatService, reader: str) -> None:
    reply = await service.say("订阅 " + " ".join("量" for _ in range(200)), openid=reader)
    assert reply.count("『量』没有订上") == 1
    assert "另有" not in reply


@pytest.mark.parametrize(
    "words",
    [
        "<a href=x>量化</a>",
        "<script>alert(1)</script>",
        "🤖🔥 😀",
        "\u202e量化\u200b\x7f",
        "量化\t剪枝\r蒸馏",
        "]]><xml>",
    ],
    ids=["link", "script", "emoji", "invisible", "tab-cr", "cdata-end"],
)
async def test_hostile_topic_words_get_a_plain_reply_and_store_only_real_topics(
    service: WeChatService, reader: str, words: str
) -> None:
    reply = await service.say("订阅 " + words, openid=reader)
    assert_fits(reply)
    # WeChat text shows no markup of the reader's, nor characters that print nothing.
    assert "<" not in reply
    assert ">" not in reply
    assert "\u202e" not in reply
    assert "\x7f" not in reply
    stored = await topics_of(service, reader) or ()
    assert all(topic in service.services.topics.labels or topic.isalnum() for topic in stored)
    assert set(stored) <= {"量化", "剪枝", "蒸馏", "script", "alert"}


async def test_hostile_words_to_take_off_are_listed_plainly(service: WeChatService, reader: str) -> None:
    await service.say("订阅 量化", openid=reader)
    reply = await service.say("退订 <b>x</b> 🤖 " + "、".join(f"w{n}" for n in range(50)), openid=reader)
    assert "<" not in reply
    assert "你没有订阅这些话题" in reply
    assert f"另有 {52 - SHOWN_WORDS} 个你没有订阅的话题" in reply
    assert_fits(reply)
    assert await topics_of(service, reader) == ("量化",)
