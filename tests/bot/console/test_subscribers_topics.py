"""Topics set at the subscriber desk go through the readers' vocabulary (bot/topics.py): canonical
topics, refusals with suggestions and the cap said on the page, for a WeCom or Feishu group robot as for
a person; and a reader's pause shown on their page. Through the real app and its SQLite database."""

from __future__ import annotations

import re

import pytest

from bot.services import SERVICES
from bot.topics import describe_topics
from channels.registry import channel_registry
from storage.database import Database
from storage.subscribers import MAX_TOPICS, Subscriber, SubscriberStore
from tests.bot.console.conftest import NAME, SignedIn

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
FEISHU_HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/0123abcd-4567-89ef-0123-456789abcdef"


async def _add(console: SignedIn, channel: str, address: str) -> Subscriber:
    async with Database(console.database_url) as database:
        subscriber, _ = await SubscriberStore(database, keys=channel_registry().address_key).subscribe(
            channel, address
        )
    return subscriber


async def _get(console: SignedIn, subscriber_id: int) -> Subscriber:
    async with Database(console.database_url) as database:
        found = await SubscriberStore(database).get_by_id(subscriber_id)
    assert found is not None
    return found


def _notice(html: str) -> list[str]:
    found = re.search(r'<div class="notice" role="status">(.*?)</div>', html)
    assert found is not None, html[:500]
    return re.findall(r"<p>(.*?)</p>", found.group(1))


@pytest.mark.parametrize(("channel", "address"), [("wecom", WECOM_KEY), ("feishu", FEISHU_HOOK)])
async def test_an_editor_sets_a_group_robots_topics_through_the_vocabulary(
    console: SignedIn, channel: str, address: str
) -> None:
    robot = await _add(console, channel, address)
    page = f"/console/subscribers/{robot.id}"
    html = await console.page(page)
    assert f"（{channel}）" in html

    answer = await console.post(f"{page}/topics", {"topics": "Quantization, 模型量化 剪枝"})

    assert answer.status == 200
    assert _notice(await answer.text()) == [
        "已订阅：量化、剪枝",
        describe_topics(("量化", "剪枝")),
    ]
    assert (await _get(console, robot.id)).topics == ("量化", "剪枝")
    trail = [(e.actor, e.action, e.subject, e.detail) for e in await console.audit()]
    assert trail[0] == (NAME, "topics", f"subscriber {robot.id}", "量化 剪枝")


async def test_refused_words_get_their_reason_and_suggestions_and_store_nothing(console: SignedIn) -> None:
    robot = await _add(console, "wecom", WECOM_KEY)
    page = f"/console/subscribers/{robot.id}"
    await console.page(page)
    vocabulary = console.client.app[SERVICES].topics
    suggestions = "、".join(vocabulary.suggest("<b>量</b>"))

    answer = await console.post(f"{page}/topics", {"topics": "<b>量</b> 🚀 量化"})

    assert answer.status == 200
    html = await answer.text()
    assert "<b>量</b>" not in html  # escaped: the editor's words are text on the page
    assert _notice(html) == [
        "已订阅：量化",
        f"『&lt;b&gt;量&lt;/b&gt;』没有订上：往期没有相关内容，试试：{suggestions}",
        f"『🚀』没有订上：往期没有相关内容，试试：{'、'.join(vocabulary.suggest('🚀'))}",
        describe_topics(("量化",)),
    ]
    assert (await _get(console, robot.id)).topics == ("量化",)


async def test_the_cap_is_kept_and_said(console: SignedIn) -> None:
    robot = await _add(console, "feishu", FEISHU_HOOK)
    page = f"/console/subscribers/{robot.id}"
    await console.page(page)
    labels = console.client.app[SERVICES].topics.labels
    assert len(labels) > MAX_TOPICS + 2

    answer = await console.post(f"{page}/topics", {"topics": " ".join(labels[: MAX_TOPICS + 2])})

    assert answer.status == 200
    lines = _notice(await answer.text())
    over = "、".join(labels[MAX_TOPICS : MAX_TOPICS + 2])
    assert lines[1] == f"每人最多 {MAX_TOPICS} 个话题，已满，没有加上：{over}。先退订几个再加。"
    assert (await _get(console, robot.id)).topics == labels[:MAX_TOPICS]


async def test_a_topic_the_subscriber_has_stays_though_the_vocabulary_would_not_take_it(
    console: SignedIn,
) -> None:
    robot = await _add(console, "wecom", WECOM_KEY)
    async with Database(console.database_url) as database:
        await SubscriberStore(database).set_topics("wecom", WECOM_KEY, ["老话题", "量化"])
    page = f"/console/subscribers/{robot.id}"
    await console.page(page)

    answer = await console.post(f"{page}/topics", {"topics": "老话题"})

    assert _notice(await answer.text())[0] == "已退订：量化"
    assert (await _get(console, robot.id)).topics == ("老话题",)
    unchanged = await console.post(f"{page}/topics", {"topics": "老话题"})
    assert _notice(await unchanged.text())[0] == "话题没有变化。"
    assert len([e for e in await console.audit() if e.action == "topics"]) == 1


async def test_the_page_shows_a_readers_pause(console: SignedIn) -> None:
    reader = await _add(console, "email", "reader@example.com")
    page = f"/console/subscribers/{reader.id}"
    assert '<tr><th scope="row">暂停</th><td>—</td></tr>' in await console.page(page)
    async with Database(console.database_url) as database:
        await SubscriberStore(database).set_preferences(
            "email", "reader@example.com", topics=(), paused_issues=3
        )

    assert '<tr><th scope="row">暂停</th><td>接下来的 3 期不发</td></tr>' in await console.page(page)
