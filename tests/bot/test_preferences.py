"""The reader's preference page (/preferences/{token}) over HTTP as a reader's browser uses it, on the real
app with its SQLite database and fake SMTP server: the form, saving topics (through the shared vocabulary)
and a pause, leaving; and every way a link or a form can be wrong or hostile, each answered with one line
and nothing stored."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, FormData
from markupsafe import escape

from bot.csrf import FIELD
from bot.preferences import OFFERED_POPULAR
from bot.tokens import Purpose
from bot.topics import MAX_REQUEST_CHARS, SHOWN_WORDS, describe_topics
from content.parser import parse_issue
from content.source import decode_issue
from storage.subscribers import MAX_PAUSED_ISSUES, MAX_TOPIC_LENGTH, MAX_TOPICS, Subscriber, SubscriberStatus
from tests.bot.helpers import DEMO_DIR
from tests.bot.signup_helpers import READER, Service, csrf_field, running_signup

MASKED = "R***@Example.com"
Fields = list[tuple[str, str]]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_signup(tmp_path) as service:
        yield service


async def _reader(service: Service, topics: tuple[str, ...] = ("量化", "老话题")) -> Subscriber:
    subscriber, _ = await service.services.subscribers.subscribe("email", READER, topics=topics)
    return subscriber


def _path(service: Service, subscriber: Subscriber, purpose: Purpose = Purpose.PREFERENCES) -> str:
    return f"/preferences/{service.token(purpose, subscriber)}"


async def _open(service: Service, path: str) -> str:
    """The page's CSRF field, as the reader's browser gets it with the cookie."""
    page = await service.client.get(path)
    assert page.status == 200
    return csrf_field(await page.text())


async def _save(service: Service, path: str, fields: Fields) -> ClientResponse:
    field = await _open(service, path)
    return await service.client.post(path, data=[(FIELD, field), *fields], allow_redirects=False)


def _lines(html: str) -> list[str]:
    """The page's text lines: the paragraphs between its heading and its link or form."""
    body = html.split("</h1>", 1)[1]
    body = re.split(r"<p><a href=|<form", body, maxsplit=1)[0]
    return re.findall(r"<p>(.*?)</p>", body)


def _refused(service: Service, word: str) -> str:
    """The line for a word no issue is about, as the page shows it (escaped): with the vocabulary's
    suggestions when it has some."""
    suggestions = "、".join(service.services.topics.suggest(word))
    line = f"『{word}』没有订上：往期没有相关内容" + (f"，试试：{suggestions}" if suggestions else "")
    return str(escape(line))


async def _stored(service: Service) -> tuple[SubscriberStatus, tuple[str, ...], int]:
    row = await service.subscriber()
    return row.status, row.topics, row.paused_issues


# --- the page


async def test_the_page_offers_their_topics_the_popular_ones_and_the_rest(service: Service) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)
    vocabulary = service.services.topics
    # A real issue in the search index, so that some topics are popular (in its last issues).
    demo = parse_issue(decode_issue((DEMO_DIR / "2020-07-02.md").read_bytes()))
    service.services.search.replace_issues([demo])
    popular = [topic for topic in vocabulary.popular(OFFERED_POPULAR) if topic not in ("量化", "老话题")]
    assert len(popular) >= 3

    page = await service.client.get(path)

    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = await page.text()
    field = csrf_field(html)
    rest = [topic for topic in vocabulary.labels if topic not in {"量化", "老话题", *popular}]

    def box(topic: str, checked: bool = False) -> str:
        tick = " checked" if checked else ""
        return f'<label><input type="checkbox" name="topic" value="{topic}"{tick}> {topic}</label>\n'

    expected = (
        "<h1>订阅设置</h1>\n"
        f"<p>{MASKED} 的订阅设置。</p>\n"
        f"<p>{describe_topics(('量化', '老话题'))}</p>\n\n\n\n"
        f'<form method="post" action="{path}">\n'
        f'<input type="hidden" name="csrf_token" value="{field}">\n'
        "<fieldset>\n"
        f"<legend>话题（最多 {MAX_TOPICS} 个；一个也不选，每期都收到完整的简报）</legend>\n"
        + box("量化", True)
        + box("老话题", True)
        + "".join(box(topic) for topic in popular)
        + "\n<details>\n<summary>更多话题</summary>\n"
        + "".join(box(topic) for topic in rest)
        + "\n</details>\n\n"
        f'<p><label>其他话题（空格或逗号分开） <input name="more" maxlength="{MAX_REQUEST_CHARS}"></label></p>\n'
        "</fieldset>\n<fieldset>\n<legend>暂停</legend>\n\n"
        '<label><input type="radio" name="pause" value="keep" checked> 不变</label>\n'
        + "".join(
            f'<label><input type="radio" name="pause" value="{n}"> 暂停 {n} 期</label>\n'
            for n in (1, 2, 3, 6)
        )
        + "\n"
        '<label><input type="radio" name="pause" value="0"> 恢复发送</label>\n'
        "</fieldset>\n"
        '<button type="submit">保存</button>\n'
        "</form>\n"
        f'<form method="post" action="{path}">\n'
        f'<input type="hidden" name="csrf_token" value="{field}">\n'
        '<input type="hidden" name="action" value="leave">\n'
        '<p>不想再收到简报？ <button type="submit">退订</button></p>\n'
        "</form>\n"
    )
    assert expected in html
    assert READER not in html
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化", "老话题"), 0)


async def test_saving_topics_and_a_pause_says_what_changed(service: Service) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)

    saved = await _save(
        service,
        path,
        [("topic", "老话题"), ("topic", "剪枝"), ("more", "Quantization, 🚀 模型量化"), ("pause", "3")],
    )

    assert saved.status == 200
    html = await saved.text()
    # 量化 was unticked but written again ("Quantization", "模型量化" are its words): it stays.
    assert _lines(html) == [
        "已订阅：剪枝、量化",
        _refused(service, "🚀"),
        describe_topics(("老话题", "剪枝", "量化")),
        "已暂停：接下来的 3 期不发给你，之后自动恢复。",
    ]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("老话题", "剪枝", "量化"), 3)
    assert f'<p><a href="{path}">返回订阅设置</a></p>' in html


async def test_unticking_removes_and_resuming_ends_the_pause(service: Service) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)
    await service.services.subscribers.set_preferences(
        "email", READER, topics=("量化", "老话题"), paused_issues=2
    )

    saved = await _save(service, path, [("topic", "量化"), ("pause", "0")])

    assert saved.status == 200
    assert _lines(await saved.text()) == [
        "已退订：老话题",
        describe_topics(("量化",)),
        "已恢复：下一期起照常发送。",
    ]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化",), 0)

    unchanged = await _save(service, path, [("topic", "量化"), ("pause", "keep")])
    assert _lines(await unchanged.text()) == ["话题没有变化。", describe_topics(("量化",))]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化",), 0)


async def test_ticking_more_than_the_cap_keeps_the_first_and_says_so(service: Service) -> None:
    subscriber = await _reader(service, topics=())
    labels = service.services.topics.labels
    ticked = labels[: MAX_TOPICS + 2]

    saved = await _save(service, _path(service, subscriber), [("topic", topic) for topic in ticked])

    assert saved.status == 200
    over = "、".join(ticked[MAX_TOPICS:])
    assert _lines(await saved.text()) == [
        f"已订阅：{'、'.join(ticked[:MAX_TOPICS])}",
        f"每人最多 {MAX_TOPICS} 个话题，已满，没有加上：{over}。先退订几个再加。",
        describe_topics(ticked[:MAX_TOPICS]),
    ]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ticked[:MAX_TOPICS], 0)


async def test_leaving_unsubscribes_like_the_one_click_link(service: Service) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)

    left = await _save(service, path, [("action", "leave")])

    assert left.status == 200
    assert _lines(await left.text()) == [f"{MASKED} 已退订，不会再收到简报。"]
    assert (await _stored(service))[0] == SubscriberStatus.UNSUBSCRIBED
    page = await service.client.get(path)
    assert (page.status, _lines(await page.text())) == (200, [f"{MASKED} 已经退订，不会再收到简报。"])
    # A form opened before leaving changes nothing afterwards.
    field = csrf_field(await (await service.client.get("/issues/2021-07-18")).text())
    late = await service.client.post(path, data=[(FIELD, field), ("topic", "剪枝"), ("pause", "2")])
    assert late.status == 409
    assert len(_lines(await late.text())) == 1
    assert await _stored(service) == (SubscriberStatus.UNSUBSCRIBED, ("量化", "老话题"), 0)


async def test_one_click_unsubscribe_stays_as_it_was(service: Service) -> None:
    subscriber = await _reader(service)

    # A preference token is not an unsubscribe token, nor the other way round.
    wrong = await service.client.post(f"/unsubscribe/{service.token(Purpose.PREFERENCES, subscriber)}")
    assert wrong.status == 400
    assert (await _stored(service))[0] == SubscriberStatus.ACTIVE

    left = await service.client.post(
        f"/unsubscribe/{service.token(Purpose.UNSUBSCRIBE, subscriber)}",
        data={"List-Unsubscribe": "One-Click"},
        allow_redirects=False,
    )
    assert left.status == 200
    assert await left.text() == "已退订 · unsubscribed\n"
    assert (await _stored(service))[0] == SubscriberStatus.UNSUBSCRIBED


# --- bad links


@pytest.mark.parametrize("kind", ["garbled", "changed", "unsubscribe token", "confirm token", "gone"])
async def test_a_bad_link_gets_one_line_and_changes_nothing(service: Service, kind: str) -> None:
    subscriber = await _reader(service)
    good = _path(service, subscriber)
    field = await _open(service, good)
    token = good.removeprefix("/preferences/")
    if kind == "garbled":
        token = "not-a-token<script>"
    elif kind == "changed":
        token = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    elif kind == "unsubscribe token":
        token = service.token(Purpose.UNSUBSCRIBE, subscriber)
    elif kind == "confirm token":
        token = service.token(Purpose.CONFIRM, subscriber)
    else:
        assert await service.services.subscribers.erase("email", READER, actor="test")
    path = f"/preferences/{token}"

    page = await service.client.get(path)
    posted = await service.client.post(path, data=[(FIELD, field), ("topic", "剪枝"), ("pause", "6")])

    for response in (page, posted):
        assert response.status == 400
        html = await response.text()
        assert 'method="post"' not in html
        (line,) = _lines(html)
        assert line.startswith("这个订阅设置链接无法使用（")
        assert "<script>" not in html
    if kind != "gone":
        assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化", "老话题"), 0)


async def test_an_old_link_still_works(service: Service) -> None:
    subscriber = await _reader(service)
    path = f"/preferences/{service.token(Purpose.PREFERENCES, subscriber, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))}"

    saved = await _save(service, path, [("topic", "量化"), ("pause", "1")])

    assert saved.status == 200
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化",), 1)


# --- forged and hostile forms


@pytest.mark.parametrize("forgery", ["no cookie", "no field", "wrong field", "other origin"])
async def test_a_form_without_the_pages_csrf_pair_gets_403_and_stores_nothing(
    service: Service, forgery: str
) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)
    field = await _open(service, path)
    data = [(FIELD, field), ("topic", "剪枝"), ("pause", "6")]
    headers = {}
    if forgery == "no cookie":
        service.client.session.cookie_jar.clear()
    elif forgery == "no field":
        data = data[1:]
    elif forgery == "wrong field":
        data[0] = (FIELD, "A" * len(field))
    else:
        headers["Origin"] = "https://evil.example"

    posted = await service.client.post(path, data=data, headers=headers)

    assert posted.status == 403
    assert _lines(await posted.text()) == ["这个表单已过期，或不是从本站的页面提交的：请刷新页面再提交。"]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化", "老话题"), 0)


TOO_LONG = f"太长了：一次最多 {MAX_REQUEST_CHARS} 个字，每个话题最多 {MAX_TOPIC_LENGTH} 个字。什么也没有改。"
BAD_PAUSE = f"暂停的期数须是 0 到 {MAX_PAUSED_ISSUES} 之间的整数，什么也没有改。"


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        ([("more", "量化 " * 5000)], TOO_LONG),
        ([("more", "x" * 10_000)], TOO_LONG),
        ([("topic", "剪枝")] * 200, "一次最多勾选 {most} 个话题，什么也没有改。"),
        ([("pause", "-1")], BAD_PAUSE),
        ([("pause", str(10**9))], BAD_PAUSE),
        ([("pause", "abc")], BAD_PAUSE),
        ([("pause", str(MAX_PAUSED_ISSUES + 1))], BAD_PAUSE),
        ([("pause", "٣")], BAD_PAUSE),  # an Arabic-Indic three: a digit to str.isdigit, not to us
        ([("pause", "")], BAD_PAUSE),
        ([("pause", "1"), ("pause", "2")], "表单里有重复的项，什么也没有改：请刷新页面再提交。"),
        ([("more", "a"), ("more", "b")], "表单里有重复的项，什么也没有改：请刷新页面再提交。"),
    ],
    ids=[
        "2000 words",
        "10000 chars",
        "200 boxes",
        "pause -1",
        "pause 10**9",
        "pause abc",
        "pause 13",
        "pause arabic digit",
        "pause empty",
        "two pauses",
        "two boxes",
    ],
)
async def test_hostile_forms_get_one_line_and_store_nothing(
    service: Service, fields: Fields, answer: str
) -> None:
    subscriber = await _reader(service)
    most = MAX_TOPICS + len(service.services.topics.labels)

    posted = await _save(service, _path(service, subscriber), [("topic", "剪枝"), *fields])

    assert posted.status == 400
    assert _lines(await posted.text()) == [answer.replace("{most}", str(most))]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化", "老话题"), 0)


async def test_markup_and_emoji_are_refused_as_words_and_shown_as_text(service: Service) -> None:
    subscriber = await _reader(service, topics=())
    ticked = ["<script>alert(1)</script>", "剪" * 40]
    written = '<img src=x onerror="alert(1)"> 😀😀 <b>剪枝</b>'

    saved = await _save(
        service, _path(service, subscriber), [("more", written), *[("topic", t) for t in ticked]]
    )

    assert saved.status == 200
    html = await saved.text()
    assert "<script>alert" not in html
    assert "<img" not in html
    # Seven words refused: the first SHOWN_WORDS of them are named, the rest counted.
    assert _lines(html) == [
        _refused(service, "<script>alert(1)</script>"),
        f"『{'剪' * (MAX_TOPIC_LENGTH - 1)}…』没有订上：话题最长 {MAX_TOPIC_LENGTH} 个字",
        *(_refused(service, word) for word in ("<img", "src=x", 'onerror="alert(1)">')),
        f"另有 {7 - SHOWN_WORDS} 个词没有订上。",
        describe_topics(()),
    ]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, (), 0)


async def test_an_uploaded_file_is_not_a_topic(service: Service) -> None:
    subscriber = await _reader(service)
    path = _path(service, subscriber)
    form = FormData()
    form.add_field(FIELD, await _open(service, path))
    form.add_field("topic", io.BytesIO(b"\x89PNG" * 100), filename="topic.png", content_type="image/png")

    posted = await service.client.post(path, data=form)

    assert posted.status == 400
    assert _lines(await posted.text()) == ["表单无法读取，什么也没有改：请刷新页面再提交。"]
    assert await _stored(service) == (SubscriberStatus.ACTIVE, ("量化", "老话题"), 0)
