"""/telegram end to end: the real app on a loopback port, updates POSTed as Telegram posts them, and the
bot's Bot API calls going to the fake Telegram server, which validates them as Telegram does (HTML tag
subset, 4096 limit, callback data and inline limits) and records them. This module: the conversation
(commands, search, pages, inline mode, hostile texts, blocked chats); test_telegram_webhook.py: the
route's checks and the bot's start and stop."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from bot.telegram import search_payload
from bot.telegram.keyboard import MAX_CALLBACK_DATA_BYTES, NEXT_PAGE, PREVIOUS_PAGE
from bot.telegram.replies import (
    ALREADY_SUBSCRIBED,
    NOT_SUBSCRIBED,
    SEARCH_EXPIRED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    help_html,
    welcome_html,
)
from storage.subscribers import SubscriberStatus
from tests.bot.telegram_helpers import (
    TelegramService,
    callback_data,
    module_service,
    service,
    visible,
)
from tests.fakes.telegram_api import BOT_USERNAME
from tests.fakes.telegram_html import parse_html, utf16_units
from tests.fakes.telegram_rules import NOT_MODIFIED
from tests.fakes.telegram_updates import callback_update, inline_update, message_update, sticker_update

__all__ = ["module_service", "service"]  # the shared fixtures, used by name

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Words that name quantisation in the demo issues' titles (Chinese and English, and its 1-bit extreme).
QUANTIZATION_WORDS = ("量化", "quant", "int8", "低比特", "二值", "binary", "bit")
SEARCH_HINT = "请输入要查找的关键词"


def group_of(reader: int) -> int:
    """A supergroup's chat id (negative, -100…) for a test's own group."""
    return -1_000_000_000_000 - reader


_chat_ids = itertools.count(500_001)


@pytest.fixture
def reader() -> int:
    """A private chat (the reader's user id) no other test uses."""
    return next(_chat_ids)


def plain(html: str) -> str:
    return parse_html(html).text


def linked_titles(params: dict[str, Any]) -> list[str]:
    """The titles of the result links in a reply, as the reader sees them."""
    return [plain(title) for title in re.findall(r'<a href="[^"]*">(.*?)</a>', params["text"])]


def button(params: dict[str, Any], label: str) -> str:
    markup = params["reply_markup"]["inline_keyboard"]
    found: list[str] = [item["callback_data"] for row in markup for item in row if item["text"] == label]
    assert len(found) == 1, markup
    return found[0]


async def test_end_to_end_subscribe_ask_for_quantization_unsubscribe(
    service: TelegramService, reader: int
) -> None:
    """The issue's "done when", over the webhook and the fake Bot API."""
    await service.say(reader, "/subscribe")
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    found = await service.say(reader, "量化")
    titles = linked_titles(found)
    assert titles
    assert all(any(word in title.lower() for word in QUANTIZATION_WORDS) for title in titles)
    await service.say(reader, "/unsubscribe")
    assert await service.status_of(reader) == SubscriberStatus.UNSUBSCRIBED
    assert service.fake.errors == []


# --- commands -----------------------------------------------------------------------------------------


async def test_start_welcomes_the_reader_and_help_lists_the_commands(
    service: TelegramService, reader: int
) -> None:
    reply = await service.say(reader, "/start")
    assert visible(reply) == plain(welcome_html(BOT_USERNAME))
    assert reply["parse_mode"] == "HTML"
    assert reply["link_preview_options"] == {"is_disabled": True}
    reply = await service.say(reader, "/help")
    for command in ("/subscribe", "/unsubscribe", "/latest", "/search"):
        assert command in visible(reply)
    # An unknown command gets the help too, not silence.
    assert visible(await service.say(reader, "/frobnicate")) == plain(help_html(BOT_USERNAME))
    assert service.fake.errors == []


async def test_subscribe_and_unsubscribe_change_the_subscriber(service: TelegramService, reader: int) -> None:
    assert visible(await service.say(reader, "/subscribe")) == plain(SUBSCRIBED)
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    assert visible(await service.say(reader, "/subscribe")) == plain(ALREADY_SUBSCRIBED)
    assert visible(await service.say(reader, "/unsubscribe")) == plain(UNSUBSCRIBED)
    assert await service.status_of(reader) == SubscriberStatus.UNSUBSCRIBED
    subscriber = await service.services.subscribers.get("telegram", str(reader))
    assert subscriber is not None
    assert subscriber.left_at is not None
    assert visible(await service.say(reader, "/unsubscribe")) == plain(NOT_SUBSCRIBED)
    # A group subscribes as a whole, by its (negative) chat id; the command names the bot in groups.
    group = group_of(reader)
    await service.say(group, f"/subscribe@{BOT_USERNAME}")
    assert await service.status_of(group) == SubscriberStatus.ACTIVE


async def test_deep_links_subscribe_search_or_welcome(service: TelegramService, reader: int) -> None:
    assert visible(await service.say(reader, "/start subscribe")) == plain(SUBSCRIBED)
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE
    payload = search_payload("量化")
    assert payload is not None
    assert len(payload) <= 64
    found = await service.say(reader, f"/start {payload}")
    assert "共" in visible(found)
    assert linked_titles(found)
    # Payloads that are not ours (or not what Telegram would pass) are a plain /start.
    for odd in ("q_!!!", "q_" + "A" * 80, "../../etc/passwd", "q_____", "SUBSCRIBE", "q_gA"):
        assert visible(await service.say(reader, f"/start {odd}")) == plain(welcome_html(BOT_USERNAME)), odd
    assert service.fake.errors == []


async def test_latest_sends_the_newest_issue_as_one_valid_message(
    service: TelegramService, reader: int
) -> None:
    newest = await service.services.storage.issues.latest()
    assert newest is not None
    reply = await service.say(reader, "/latest")
    assert newest.date.isoformat() in visible(reply)
    assert 0 < utf16_units(visible(reply)) <= 4096
    assert reply["parse_mode"] == "HTML"
    assert reply["link_preview_options"] == {"is_disabled": True}
    assert "disable_web_page_preview" not in reply
    # Rendered once per issue version: a second /latest is the same message.
    assert (await service.say(reader, "/latest"))["text"] == reply["text"]
    assert service.fake.errors == []


# --- search -------------------------------------------------------------------------------------------


async def test_quantization_search_lists_quantization_items_with_paging(
    service: TelegramService, reader: int
) -> None:
    reply = await service.say(reader, "量化")
    assert service.fake.errors == []  # the fake parsed its HTML as Telegram would
    titles = linked_titles(reply)
    assert len(titles) == 5
    for title in titles:
        assert any(word in title.lower() for word in QUANTIZATION_WORDS), title
    assert "第 1–5 条" in visible(reply)
    data = callback_data(reply)
    assert data
    assert all(len(item.encode()) <= MAX_CALLBACK_DATA_BYTES for item in data)
    assert [row[0]["text"] for row in reply["reply_markup"]["inline_keyboard"]] == [NEXT_PAGE]
    # /search QUERY is the same search.
    assert (await service.say(reader, "/search 量化"))["text"] == reply["text"]
    assert visible(await service.say(reader, "/search")).startswith(SEARCH_HINT)


async def test_next_page_edits_the_message_and_previous_page_goes_back(
    service: TelegramService, reader: int
) -> None:
    first = await service.say(reader, "量化")
    message = service.fake.last_message(reader)
    await service.post(callback_update(reader, message, button(first, NEXT_PAGE)))
    (second,) = service.fake.calls("editMessageText")
    assert second["message_id"] == message["message_id"]
    assert second["chat_id"] == reader
    assert "第 6–10 条" in visible(second)
    assert set(linked_titles(second)).isdisjoint(linked_titles(first))
    assert {row[0]["text"] for row in [second["reply_markup"]["inline_keyboard"][0]]} == {PREVIOUS_PAGE}
    assert len(service.fake.calls("answerCallbackQuery")) == 1  # the reader's spinner stops
    await service.post(
        callback_update(reader, service.fake.last_message(reader), button(second, PREVIOUS_PAGE))
    )
    back = service.fake.calls("editMessageText")[-1]
    assert back["text"] == first["text"]
    assert service.fake.errors == []


async def test_a_long_query_pages_through_a_key_and_forged_buttons_are_refused(
    service: TelegramService, reader: int
) -> None:
    query = "端侧 神经网络 量化 剪枝 蒸馏 编译器 推理框架"  # 62 bytes of UTF-8: too long to carry
    first = await service.say(reader, query)
    data = button(first, NEXT_PAGE)
    assert data.startswith("k:")
    assert len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    await service.post(callback_update(reader, service.fake.last_message(reader), data))
    assert "第 6–10 条" in visible(service.fake.calls("editMessageText")[-1])
    # Buttons a client made up: an unknown key, junk, a huge offset. Answered, never edited.
    edits = len(service.fake.calls("editMessageText"))
    for forged in ("k:5:AAAAAAAAAAAA", "x", "s:-5:量化", "s:99999999999999999999:量化", "s:٣:量化"):
        await service.post(callback_update(reader, service.fake.last_message(reader), forged))
        assert service.fake.calls("answerCallbackQuery")[-1]["text"] == SEARCH_EXPIRED
    assert len(service.fake.calls("editMessageText")) == edits
    # Pressing a button of the page already shown (a double tap) is not an error either.
    await service.post(callback_update(reader, service.fake.last_message(reader), data))
    assert service.fake.errors == [("editMessageText", NOT_MODIFIED)]


@pytest.mark.parametrize(
    "text",
    [
        "C++",
        "",
        "   ",
        "x" * 10_000,
        "量化" * 3_000,
        "🤖🔥" * 50,
        "<script>alert(1)</script>",
        "</b><b>&amp;&lt;&#0;&#xD800;",
        'title:量化 OR "NPU" AND *',
        "\u202e\u200b\x00",
    ],
    ids=[
        "c++",
        "empty",
        "blank",
        "10000-chars",
        "6000-cjk",
        "emoji",
        "script",
        "entities",
        "query-syntax",
        "control",
    ],
)
async def test_hostile_text_gets_a_normal_valid_reply(
    service: TelegramService, reader: int, text: str
) -> None:
    reply = await service.say(reader, text)
    assert service.fake.errors == []
    assert 0 < utf16_units(visible(reply)) <= 4096
    assert "<script>" not in visible(reply) or "&lt;script&gt;" in reply["text"]


async def test_other_messages_get_the_search_hint_in_private_and_groups_need_a_command(
    service: TelegramService, reader: int
) -> None:
    await service.post(sticker_update(reader))
    assert visible(service.fake.sent_to(reader)[-1]).startswith(SEARCH_HINT)
    group = group_of(reader)
    for update in (
        sticker_update(group),
        message_update(group, "量化"),
        message_update(group, "/start@other_bot"),
    ):
        await service.post(update)
    edited = message_update(reader, "量化")
    edited["edited_message"] = edited.pop("message")
    await service.post(edited)
    assert service.fake.sent_to(group) == []
    assert len(service.fake.sent_to(reader)) == 1
    found = await service.say(group, f"/search@{BOT_USERNAME} 量化")
    assert len(linked_titles(found)) == 5


async def searches_counted(service: TelegramService) -> float:
    response = await service.client.get("/metrics")
    found = re.search(r'^jianbao_searches_total\{channel="telegram"\} (\S+)$', await response.text(), re.M)
    return float(found.group(1)) if found else 0.0


async def test_searches_are_counted(service: TelegramService, reader: int) -> None:
    before = await searches_counted(service)
    await service.say(reader, "量化")
    await service.post(inline_update(reader, "剪枝"))
    assert await searches_counted(service) == before + 2


# --- inline mode --------------------------------------------------------------------------------------


async def test_inline_query_answers_up_to_50_articles_and_pages_on(
    service: TelegramService, reader: int
) -> None:
    await service.post(inline_update(reader, "量化"))
    (answer,) = service.fake.calls("answerInlineQuery")
    results = answer["results"]
    assert len(results) == 50
    assert len({result["id"] for result in results}) == 50
    assert all(len(result["id"].encode()) <= 64 for result in results)
    assert any(word in results[0]["title"].lower() for word in QUANTIZATION_WORDS)
    assert results[0]["input_message_content"]["parse_mode"] == "HTML"
    assert answer["next_offset"] == "50"
    await service.post(inline_update(reader, "量化", offset=answer["next_offset"]))
    following = service.fake.calls("answerInlineQuery")[-1]
    assert 0 < len(following["results"]) <= 50
    assert {result["id"] for result in following["results"]}.isdisjoint(result["id"] for result in results)
    # An empty query offers a way into the bot; a forged offset is read as the first page.
    await service.post(inline_update(reader, ""))
    empty = service.fake.calls("answerInlineQuery")[-1]
    assert empty["results"] == []
    assert empty["button"]["start_parameter"] == "help"
    await service.post(inline_update(reader, "量化", offset="-1; DROP TABLE"))
    assert len(service.fake.calls("answerInlineQuery")[-1]["results"]) == 50
    assert service.fake.errors == []


@pytest.mark.parametrize("offset", ["9" * 5000, "99999", "５", "+5", "1e3"])
async def test_a_forged_inline_offset_is_read_as_the_first_page(
    service: TelegramService, reader: int, offset: str
) -> None:
    """Only offsets we handed out come back from Telegram; a forged one (a 5,000-digit number made int()
    raise, and the inline query went unanswered) gets the first page."""
    await service.post(inline_update(reader, "量化"))
    first = service.fake.calls("answerInlineQuery")[-1]
    await service.post(inline_update(reader, "量化", offset=offset))
    answer = service.fake.calls("answerInlineQuery")[-1]
    assert answer is not first
    assert (answer["results"], answer["next_offset"]) == (first["results"], first["next_offset"])


# --- a reader who blocked the bot, flood control -----------------------------------------------------


async def test_a_blocked_chat_marks_the_subscriber_blocked_and_the_route_still_answers_200(
    service: TelegramService, reader: int
) -> None:
    await service.say(reader, "/subscribe")
    service.fake.blocked.add(reader)
    response = await service.post(message_update(reader, "量化"))
    assert await response.text() == ""
    assert service.fake.errors[-1] == ("sendMessage", "Forbidden: bot was blocked by the user")
    assert await service.status_of(reader) == SubscriberStatus.BLOCKED
    # Unblocking and subscribing again brings the reader back.
    service.fake.blocked.clear()
    assert visible(await service.say(reader, "/subscribe")) == plain(SUBSCRIBED)
    assert await service.status_of(reader) == SubscriberStatus.ACTIVE


async def test_flood_control_drops_the_reply_without_failing_the_update(
    service: TelegramService, reader: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # python-telegram-bot 22 warns (PTBDeprecationWarning) while building RetryAfter from an int unless
    # this opts in to its future timedelta type; the warning is its own, not something our code does.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    service.fake.flood(retry_after=7)
    await service.post(message_update(reader, "量化"))
    assert service.fake.errors == [("sendMessage", "Too Many Requests: retry after 7")]
    assert any(
        "reply was dropped: Flood control exceeded" in record.getMessage() for record in caplog.records
    )
    assert (await service.say(reader, "量化"))["text"]  # the next message is answered again
