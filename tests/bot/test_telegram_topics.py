"""Readers choose their topics on Telegram: `/subscribe 量化 剪枝`, `/unsubscribe 量化`, and /topics with
its keyboard of toggles. Through the webhook and the fake Bot API (which validates the HTML, the callback
data and the edits as Telegram does, and records them), the topics checked in the database."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bot.telegram.keyboard import MAX_CALLBACK_DATA_BYTES, NEXT_PAGE
from bot.telegram.replies import (
    ALREADY_SUBSCRIBED,
    COMMANDS,
    NOT_SUBSCRIBED,
    SUBSCRIBED,
    TOPIC_BUTTON_EXPIRED,
    TOPICS_FULL,
    UNSUBSCRIBED,
    help_html,
)
from bot.telegram.topics_keyboard import (
    ALL_TOPICS_DATA,
    ALL_TOPICS_LABEL,
    CHOSEN_MARK,
    TOPIC_KEY_PREFIX,
)
from bot.topics import MAX_REQUEST_CHARS, SHOWN_WORDS
from storage.subscribers import MAX_TOPICS, SubscriberStatus
from tests.bot.telegram_helpers import (
    TelegramService,
    callback_data,
    module_service,
    service,
    visible,
)
from tests.fakes.telegram_api import BOT_USERNAME
from tests.fakes.telegram_html import parse_html
from tests.fakes.telegram_updates import callback_update

__all__ = ["module_service", "service"]  # the shared fixtures, used by name

pytestmark = pytest.mark.asyncio(loop_scope="module")

_chat_ids = itertools.count(700_001)


@pytest.fixture
def reader() -> int:
    """A private chat no other test uses."""
    return next(_chat_ids)


async def topics_of(service: TelegramService, chat_id: int) -> tuple[str, ...] | None:
    subscriber = await service.services.subscribers.get("telegram", str(chat_id))
    return None if subscriber is None else subscriber.topics


def buttons(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, callback data) of every button of a message, row after row."""
    rows = params["reply_markup"]["inline_keyboard"]
    return [(button["text"], button["callback_data"]) for row in rows for button in row]


def data_of(params: dict[str, Any], label: str) -> str:
    found = [data for text, data in buttons(params) if text == label]
    assert len(found) == 1, buttons(params)
    return found[0]


async def press(service: TelegramService, chat_id: int, data: str) -> dict[str, Any]:
    """Press a button of the chat's latest message; return the answerCallbackQuery parameters."""
    answers = len(service.fake.calls("answerCallbackQuery"))
    await service.post(callback_update(chat_id, service.fake.last_message(chat_id), data))
    (answer,) = service.fake.calls("answerCallbackQuery")[answers:]
    return answer


# --- commands -------------------------------------------------------------------------------------


async def test_subscribe_with_topics_subscribes_and_adds_them(service: TelegramService, reader: int) -> None:
    reply = visible(await service.say(reader, "/subscribe 量化 剪枝"))
    assert parse_html(SUBSCRIBED).text in reply
    assert "已订阅：量化、剪枝" in reply
    assert f"你关注的话题（2/{MAX_TOPICS}）：量化、剪枝" in reply
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    assert await topics_of(service, reader) == ("量化", "剪枝")
    # An English spelling is the same topic; a new one is added after the others.
    reply = visible(await service.say(reader, "/subscribe quantization、蒸馏"))
    assert "已订阅：蒸馏" in reply
    assert await topics_of(service, reader) == ("量化", "剪枝", "蒸馏")
    assert service.fake.errors == []


async def test_unsubscribe_a_topic_and_then_everything(service: TelegramService, reader: int) -> None:
    await service.say(reader, "/subscribe 量化 剪枝")
    reply = visible(await service.say(reader, "/unsubscribe 量化"))
    assert "已退订：量化" in reply
    assert await topics_of(service, reader) == ("剪枝",)
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    assert visible(await service.say(reader, "/unsubscribe")) == parse_html(UNSUBSCRIBED).text
    assert await service.status_of(reader) == SubscriberStatus.UNSUBSCRIBED
    assert visible(await service.say(reader, "/unsubscribe 剪枝")) == parse_html(NOT_SUBSCRIBED).text


async def test_subscribe_alone_keeps_its_replies_and_clears_topics(
    service: TelegramService, reader: int
) -> None:
    assert visible(await service.say(reader, "/subscribe")) == parse_html(SUBSCRIBED).text
    await service.say(reader, "/subscribe 量化 剪枝")
    reply = visible(await service.say(reader, "/subscribe"))
    assert "已清除你的话题：量化、剪枝" in reply
    assert await topics_of(service, reader) == ()
    assert visible(await service.say(reader, "/subscribe")) == parse_html(ALREADY_SUBSCRIBED).text


async def test_an_unknown_topic_gets_suggestions_and_subscribes_nobody(
    service: TelegramService, reader: int
) -> None:
    reply = visible(await service.say(reader, "/subscribe xyzzyq"))
    assert "『xyzzyq』没有订上" in reply
    assert "试试：" in reply
    assert await topics_of(service, reader) is None


@pytest.mark.parametrize(
    "words",
    [
        "x" * 10_000,
        " ".join(["量化"] * 200),
        '<a href="x">量化</a> <script>alert(1)</script> &amp;',
        "🤖🔥 😀 量化",
        "量化\x00 \x01剪枝 \u202e蒸馏",
        " ".join(chr(0x4E00 + number) for number in range(200)),
    ],
    ids=["10000-chars", "200-topics", "markup", "emoji", "control", "200-refused"],
)
async def test_hostile_subscribe_words_are_escaped_bounded_and_store_only_topics(
    service: TelegramService, reader: int, words: str
) -> None:
    sent = await service.say(reader, f"/subscribe {words}")
    reply = visible(sent)
    assert service.fake.errors == []  # the fake refuses HTML Telegram would refuse
    # The reader's words are shown as text, never as markup.
    assert "<script" not in sent["text"]
    assert "<a " not in sent["text"]
    assert "\x00" not in reply
    assert "\u202e" not in reply
    assert reply.count("没有订上：") <= SHOWN_WORDS
    stored = await topics_of(service, reader) or ()
    assert len(stored) <= MAX_TOPICS
    assert set(stored) <= {"量化", "剪枝", "蒸馏"}
    if len(words) > MAX_REQUEST_CHARS:
        assert f"每人最多 {MAX_TOPICS} 个话题" in reply
        assert stored == ()


async def test_markup_in_a_refused_word_is_shown_as_written(service: TelegramService, reader: int) -> None:
    sent = await service.say(reader, "/subscribe <b>x</b>")
    assert "&lt;b&gt;x&lt;/b&gt;" in sent["text"]
    assert "『<b>x</b>』没有订上" in visible(sent)


async def test_help_and_the_command_list_name_topics(service: TelegramService, reader: int) -> None:
    assert "topics" in [name for name, _ in COMMANDS]
    reply = visible(await service.say(reader, "/help"))
    assert reply == parse_html(help_html(BOT_USERNAME)).text
    assert "/topics" in reply
    assert "/subscribe 量化" in reply


# --- the /topics keyboard -------------------------------------------------------------------------


async def test_topics_shows_own_and_popular_topics_with_a_button_for_all(
    service: TelegramService, reader: int
) -> None:
    await service.say(reader, "/subscribe 量化")
    sent = await service.say(reader, "/topics")
    popular = service.services.topics.popular(8)
    assert popular
    offered = ["量化", *(topic for topic in popular if topic != "量化")]
    labels = [label for label, _ in buttons(sent)]
    assert labels == [CHOSEN_MARK + "量化", *offered[1:], ALL_TOPICS_LABEL]
    assert callback_data(sent) == [*(f"t:{topic}" for topic in offered), ALL_TOPICS_DATA]
    assert all(len(data.encode()) <= MAX_CALLBACK_DATA_BYTES for data in callback_data(sent))
    assert f"你关注的话题（1/{MAX_TOPICS}）：量化" in visible(sent)


async def test_pressing_topics_toggles_them_and_edits_the_message(
    service: TelegramService, reader: int
) -> None:
    sent = await service.say(reader, "/topics")
    assert "你还没有订阅" in visible(sent)
    assert buttons(sent)[-1][0] == ALL_TOPICS_LABEL  # not subscribed: nothing is chosen
    first, second = service.services.topics.popular(2)

    # The first press subscribes the chat.
    answer = await press(service, reader, data_of(sent, first))
    assert answer["text"] == f"已订阅 {first}"
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    assert await topics_of(service, reader) == (first,)
    edited = service.fake.calls("editMessageText")[-1]
    assert edited["message_id"] == service.fake.last_message(reader)["message_id"]
    assert CHOSEN_MARK + first in [label for label, _ in buttons(edited)]

    await press(service, reader, data_of(edited, second))
    assert await topics_of(service, reader) == (first, second)
    edited = service.fake.calls("editMessageText")[-1]
    labels = [label for label, _ in buttons(edited)]
    assert {CHOSEN_MARK + first, CHOSEN_MARK + second} <= set(labels)
    assert f"你关注的话题（2/{MAX_TOPICS}）" in visible(edited)
    # The message as the reader sees it now carries the new keyboard.
    assert buttons(service.fake.last_message(reader)) == buttons(edited)

    # Pressed again, a topic goes off.
    answer = await press(service, reader, data_of(edited, CHOSEN_MARK + first))
    assert answer["text"] == f"已取消 {first}"
    assert await topics_of(service, reader) == (second,)
    edited = service.fake.calls("editMessageText")[-1]
    assert first in [label for label, _ in buttons(edited)]
    assert CHOSEN_MARK + first not in [label for label, _ in buttons(edited)]

    # 全部 clears them, and is then the one chosen.
    await press(service, reader, ALL_TOPICS_DATA)
    assert await topics_of(service, reader) == ()
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    edited = service.fake.calls("editMessageText")[-1]
    assert buttons(edited)[-1][0] == CHOSEN_MARK + ALL_TOPICS_LABEL
    assert service.fake.errors == []


async def test_a_topic_too_long_for_callback_data_is_toggled_by_its_key(
    service: TelegramService, reader: int
) -> None:
    long_topic = "端侧神经网络推理引擎的低比特量化与剪枝技术综述合集"  # 26 characters, 78 bytes
    await service.say(reader, "/subscribe")
    await service.services.subscribers.set_topics("telegram", str(reader), [long_topic, "量化"])
    sent = await service.say(reader, "/topics")
    data = data_of(sent, CHOSEN_MARK + long_topic)
    assert data.startswith(TOPIC_KEY_PREFIX)
    assert len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    answer = await press(service, reader, data)
    assert answer["text"] == f"已取消 {long_topic}"
    assert await topics_of(service, reader) == ("量化",)
    # Its key now names no topic offered: refused, not guessed.
    answer = await press(service, reader, data)
    assert answer["text"] == TOPIC_BUTTON_EXPIRED
    assert await topics_of(service, reader) == ("量化",)


async def test_a_press_over_the_cap_is_refused_and_stores_nothing(
    service: TelegramService, reader: int
) -> None:
    vocabulary = service.services.topics
    popular = vocabulary.popular(8)
    others = [label for label in vocabulary.labels if label not in popular]
    full = [*others, "yolo", "qat"][:MAX_TOPICS]
    assert len(full) == MAX_TOPICS
    await service.say(reader, "/subscribe")
    await service.services.subscribers.set_topics("telegram", str(reader), full)
    sent = await service.say(reader, "/topics")
    edits = len(service.fake.calls("editMessageText"))
    answer = await press(service, reader, data_of(sent, popular[0]))
    assert answer["text"] == TOPICS_FULL
    assert await topics_of(service, reader) == tuple(full)
    assert len(service.fake.calls("editMessageText")) == edits
    # Taking one off makes room.
    await press(service, reader, data_of(sent, CHOSEN_MARK + full[0]))
    await press(service, reader, data_of(sent, popular[0]))
    assert await topics_of(service, reader) == (*full[1:], popular[0])


@pytest.mark.parametrize(
    "forged",
    [
        "t:xyzzyq",
        "t:",
        "t: 量化",
        "t:量化\x00",
        "t:quantization",  # a spelling, not the topic: no button carries it
        "t:" + "量" * 20,
        "tk:AAAAAAAAAAAA",
        "tk:短",
        "t*x",
        "t",
        "t" * 64,
    ],
)
async def test_forged_topic_buttons_get_a_friendly_answer_and_change_nothing(
    service: TelegramService, reader: int, forged: str
) -> None:
    await service.say(reader, "/subscribe 剪枝")
    await service.say(reader, "/topics")
    edits = len(service.fake.calls("editMessageText"))
    answer = await press(service, reader, forged)
    assert answer["text"] == TOPIC_BUTTON_EXPIRED
    assert len(service.fake.calls("editMessageText")) == edits
    assert await topics_of(service, reader) == ("剪枝",)
    assert service.fake.errors == []


async def test_page_buttons_still_work_beside_topic_buttons(service: TelegramService, reader: int) -> None:
    first = await service.say(reader, "量化")
    await press(service, reader, data_of(first, NEXT_PAGE))
    assert "第 6–10 条" in visible(service.fake.calls("editMessageText")[-1])
