"""The Telegram channel's small parts on their own: page buttons' callback data, deep-link payloads, the
reply texts; and the fake Bot API's own rules (a fake that accepted what Telegram refuses would make
every other Telegram test worthless)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.telegram.deeplinks import ACTIONS, StartRequest, read_payload, search_payload
from bot.telegram.keyboard import (
    MAX_CALLBACK_DATA_BYTES,
    MAX_OFFSET,
    PAGE_SIZE,
    PageRequest,
    RecentQueries,
    page_data,
    page_keyboard,
    read_offset,
    read_page_data,
)
from bot.telegram.replies import (
    SORRY,
    help_html,
    hit_html,
    inline_articles,
    result_id,
    search_html,
    welcome_html,
)
from bot.telegram.topics_keyboard import (
    ALL_TOPICS_DATA,
    TOPIC_DATA_PATTERN,
    TopicPress,
    find_topic,
    read_topic_data,
    topic_data,
    topics_keyboard,
)
from storage.search.results import MAX_OFFSET as SEARCH_MAX_OFFSET
from storage.search.results import SearchHit, SearchResult
from tests.fakes.telegram_api import TOKEN, FakeTelegram, fake_telegram
from tests.fakes.telegram_html import EntityError, parse_html
from tests.fakes.telegram_rules import ApiError, message_text

__all__ = ["fake_telegram"]  # the fixture, used by name

HOSTILE = "<script>alert('x')</script> & </b> \"quoted\" 🤖"


def hit(
    title: str = "INT8 量化", *, url: str | None = "https://example.com/a?x=1&y=2", position: int = 1
) -> SearchHit:
    return SearchHit(
        date=dt.date(2021, 8, 1),
        section="论文",
        position=position,
        title=title,
        url=url,
        snippet="一段摘要 <b>不是标签</b> & 符号",
        score=1.0,
        matched=("量化",),
    )


# --- callback data ---------------------------------------------------------------------------------------


@given(query=st.text(max_size=200), offset=st.integers(min_value=0, max_value=MAX_OFFSET))
def test_page_data_always_fits_and_reads_back(query: str, offset: int) -> None:
    recent = RecentQueries()
    data = page_data(query, offset, recent)
    assert 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    assert read_page_data(data, recent) == PageRequest(query, offset)


def test_offsets_from_clients_are_read_within_the_bound() -> None:
    assert MAX_OFFSET <= SEARCH_MAX_OFFSET  # past the index's bound every page would come back empty
    assert [read_offset(text) for text in ("0", "5", str(MAX_OFFSET), "005")] == [0, 5, MAX_OFFSET, 5]
    for forged in ("", str(MAX_OFFSET + 1), "9" * 5000, "-1", "+5", " 5", "1_0", "５", "1e3", "٣"):
        assert read_offset(forged) is None, forged[:10]
    assert read_page_data("s:" + "9" * 5000 + ":量化", RecentQueries()) is None


def test_a_forgotten_key_or_forged_data_reads_as_nothing() -> None:
    recent = RecentQueries(capacity=2)
    long_query = "端侧神经网络量化剪枝蒸馏编译器推理框架" * 2
    data = page_data(long_query, 5, recent)
    assert data.startswith("k:")
    page_data(long_query + "1", 0, recent)
    page_data(long_query + "2", 0, recent)  # the first key is pushed out
    assert len(recent) == 2
    assert read_page_data(data, recent) is None
    for forged in ("", ":", "s", "s:", "s:x:q", "s:-1:q", f"s:{MAX_OFFSET + 1}:q", "s:١:q", "k:0:", "z:0:q"):
        assert read_page_data(forged, recent) is None, forged
    assert read_page_data("s:0:", recent) == PageRequest("", 0)  # an empty search: the hint, harmlessly


_TOPIC = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=32)


@given(topic=_TOPIC, others=st.lists(_TOPIC, max_size=27))
def test_topic_data_always_fits_and_finds_its_topic_among_those_offered(
    topic: str, others: list[str]
) -> None:
    data = topic_data(topic)
    assert 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    assert TOPIC_DATA_PATTERN.match(data)
    press = read_topic_data(data)
    assert press is not None
    assert find_topic(press, [*others, topic]) == topic
    # A page button never reads as a topic button, nor a topic button as a page button.
    assert read_page_data(data, RecentQueries()) is None
    assert not TOPIC_DATA_PATTERN.match(page_data(topic, 0, RecentQueries()))


def test_long_topics_go_by_key_and_forged_topic_data_reads_as_nothing() -> None:
    long_topic = "端" * 32  # 96 bytes of UTF-8
    data = topic_data(long_topic)
    assert data.startswith("tk:")
    press = read_topic_data(data)
    assert press is not None
    assert find_topic(press, ["量化"]) is None  # a key whose topic is not offered is no topic
    assert read_topic_data(ALL_TOPICS_DATA) == TopicPress()
    for forged in (
        "",
        "t",
        "t:",
        "t: x",
        "t:x\x00",
        "t:" + "a" * 33,
        "tk:",
        "tk:short",
        "tk:" + "=" * 12,
        "t**",
    ):
        assert read_topic_data(forged) is None, forged


def test_the_topics_keyboard_marks_the_chosen_ones_and_all() -> None:
    rows = topics_keyboard(["量化"], ["剪枝", "量化"]).inline_keyboard
    labels = [button.text for row in rows for button in row]
    assert labels == ["✅ 量化", "剪枝", "全部（不选话题）"]
    rows = topics_keyboard([], ["剪枝"]).inline_keyboard
    assert [button.text for row in rows for button in row] == ["剪枝", "✅ 全部（不选话题）"]
    rows = topics_keyboard([], ["剪枝"], subscribed=False).inline_keyboard
    assert [button.text for row in rows for button in row] == ["剪枝", "全部（不选话题）"]


def test_the_keyboard_offers_only_the_pages_that_exist() -> None:
    recent = RecentQueries()
    assert page_keyboard("量化", 0, 3, 3, recent) is None
    first = page_keyboard("量化", 0, PAGE_SIZE, 12, recent)
    assert first is not None
    assert [button.text for button in first.inline_keyboard[0]] == ["下一页 »"]
    last = page_keyboard("量化", 10, 2, 12, recent)
    assert last is not None
    assert [button.callback_data for button in last.inline_keyboard[0]] == ["s:5:量化"]
    capped = page_keyboard("量化", MAX_OFFSET, PAGE_SIZE, 10_000, recent)
    assert capped is not None
    assert [button.text for button in capped.inline_keyboard[0]] == ["« 上一页"]


# --- deep links ------------------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=30).filter(str.strip))
def test_search_payloads_read_back_when_they_fit(query: str) -> None:
    payload = search_payload(query)
    if payload is None:
        assert len(query.encode()) > 45
        return
    assert len(payload) <= 64
    assert read_payload(payload) == StartRequest("search", query)


def test_payloads() -> None:
    for action in ACTIONS:
        assert read_payload(action) == StartRequest(action)
    assert search_payload("量化" * 20) is None
    assert search_payload("") is None
    for odd in ("", "q_", "q_%%%", "q_" + "A" * 63, "subscribe ", "Subscribe", "q_gA", "q_IA", "x" * 65):
        assert read_payload(odd) is None, odd


# --- replies ---------------------------------------------------------------------------------------------


def test_fixed_texts_and_result_pages_are_valid_telegram_html() -> None:
    for text in (welcome_html("jianbao_bot"), help_html("a<b>&c"), SORRY):
        message_text(text, "HTML")
    result = SearchResult(
        query=HOSTILE, hits=(hit(HOSTILE), hit(url=None), hit(url="javascript:alert(1)")), total=9
    )
    page = search_html(result, 0)
    parsed = message_text(page, "HTML")
    assert HOSTILE[:10] in parsed.text  # shown as written
    assert [entity["url"] for entity in parsed.entities if entity["type"] == "text_link"] == [
        "https://example.com/a?x=1&y=2"
    ]  # the javascript: URL is shown as a title, not linked
    assert "第 1–3 条" in parsed.text
    empty = SearchResult(query="", hits=(), total=0, hint="请输入要查找的关键词")
    assert message_text(search_html(empty, 0), "HTML").text == "请输入要查找的关键词"
    assert "没有更多结果了" in message_text(search_html(SearchResult("量化", (), 9), 10), "HTML").text


def test_inline_articles_have_unique_short_ids_and_valid_texts() -> None:
    hits = tuple(hit(f"条目 {n} {HOSTILE}", position=n) for n in range(50))
    articles = inline_articles(SearchResult(query="量化", hits=hits, total=50))
    ids = [article.id for article in articles]
    assert len(set(ids)) == 50
    assert all(len(item.encode()) <= 64 for item in ids)
    for article in articles:
        content: Any = article.input_message_content
        message_text(content.message_text, content.parse_mode)
    assert result_id(hit()) == result_id(hit())
    assert "<b>不是标签</b>" in parse_html(hit_html(hit())).text


# --- the fake Bot API's own rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<p>段落</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("一<br>二", 'Unsupported start tag "br" at byte offset 3'),
        ("<b>粗", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<a href='x'", "Unclosed start tag at byte offset 0"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_the_fake_refuses_what_telegram_refuses(html: str, error: str) -> None:
    with pytest.raises(EntityError) as raised:
        parse_html(html)
    assert str(raised.value) == error
    with pytest.raises(ApiError) as refused:
        message_text(html, "HTML")
    assert refused.value.description == f"Bad Request: can't parse entities: {error}"


def test_the_fake_accepts_the_whole_html_style_and_counts_utf16() -> None:
    html = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike>"
        '<del>d</del><tg-spoiler>p</tg-spoiler><span class="tg-spoiler">p</span><a href="https://x.y/?a=1&amp;b">a</a>'
        '<code>c</code><pre><code class="language-python">x</code></pre><blockquote expandable>q</blockquote>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> &lt;&gt;&amp;&quot;&#39;&#x4e2d; & 🤖'
    )
    parsed = parse_html(html)
    assert parsed.text.endswith("👍 <>&\"'中 & 🤖")
    assert {entity["type"] for entity in parsed.entities} >= {
        "bold",
        "text_link",
        "expandable_blockquote",
        "spoiler",
    }
    assert parse_html("🤖" * 2048).length == 4096
    message_text("🤖" * 2048, "HTML")
    with pytest.raises(ApiError, match="message is too long"):
        message_text("🤖" * 2048 + "x", "HTML")
    with pytest.raises(ApiError, match="message text is empty"):
        message_text("<b> </b>", "HTML")


async def test_the_fake_answers_in_the_bot_api_shape(fake_telegram: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as session:

        async def call(token: str, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
            async with session.post(f"{fake_telegram.url}/bot{token}/{method}", json=params) as response:
                return response.status, await response.json()

        assert await call(TOKEN, "getMe") == (200, {"ok": True, "result": fake_telegram.bot_user})
        assert await call("123:WRONG", "getMe") == (
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
        )
        assert (await call(TOKEN, "sendPigeon"))[0] == 404
        fake_telegram.blocked.add(7)
        assert await call(TOKEN, "sendMessage", chat_id=7, text="hi") == (
            403,
            {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
        )
        fake_telegram.flood(retry_after=3)
        status, body = await call(TOKEN, "sendMessage", chat_id=8, text="hi")
        assert (status, body["parameters"]) == (429, {"retry_after": 3})
        keyboard = {"inline_keyboard": [[{"text": "下一页", "callback_data": "x" * 65}]]}
        status, body = await call(TOKEN, "sendMessage", chat_id=8, text="hi", reply_markup=keyboard)
        assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
        results = [
            {"type": "article", "id": str(n), "title": "t", "input_message_content": {"message_text": "x"}}
            for n in range(51)
        ]
        status, body = await call(TOKEN, "answerInlineQuery", inline_query_id="1", results=results)
        assert (status, body["description"]) == (400, "Bad Request: RESULTS_TOO_MUCH")
        status, body = await call(TOKEN, "sendMessage", chat_id=8, text="<b>ok</b>", parse_mode="HTML")
        assert status == 200
        assert body["result"]["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
