"""Bringing an issue in through the console, previewing it on every channel, and test sends."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import FormData

from storage.database import Database
from storage.issues import IssueStore
from tests.bot.console.conftest import DAY, SignedIn
from tests.bot.helpers import DEMO_DIR, minimal_issue
from tests.channels.test_test_send import EDITOR_OPENID

NEW_DAY = "2026-12-01"


async def _dates(console: SignedIn) -> list[str]:
    async with Database(console.database_url) as database:
        return [str(summary.date) for summary in await IssueStore(database).list()]


async def test_a_broken_paste_is_shown_with_its_line_and_stores_nothing_then_the_fix_imports(
    console: SignedIn,
) -> None:
    good = minimal_issue(NEW_DAY)
    broken = "\n\n" + good.replace(f"({NEW_DAY})", "(2026-02-30)", 1)
    await console.page("/console/issues/new")
    refused = await console.post("/console/issues/new", {"markdown": broken})
    html = await refused.text()
    assert refused.status == 422
    assert "没有保存" in html
    assert "line 3: the title&#39;s date &#39;2026-02-30&#39; does not exist" in html
    # The faulty line, numbered, is pointed at; the text comes back in the form to be fixed.
    assert re.search(r'<span class="bad"><span class="ln">3</span> # 嵌入式AI简报 \(2026-02-30\)', html)
    assert "2026-02-30" in html.split("<textarea", 1)[1]
    assert NEW_DAY not in await _dates(console)

    console.field = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    imported = await console.post("/console/issues/new", {"markdown": good})
    assert imported.status == 303
    assert imported.headers["Location"] == f"/console/issues/{NEW_DAY}"
    assert NEW_DAY in await _dates(console)
    entries = await console.audit()
    assert (entries[0].actor, entries[0].action, entries[0].subject) == (
        "editor-li",
        "import",
        f"issue {NEW_DAY}",
    )


async def test_an_uploaded_file_that_is_not_an_issue_is_refused_by_name_of_the_problem(
    console: SignedIn,
) -> None:
    await console.page("/console/issues/new")
    for data, reason in (
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary file: NUL byte at offset"),
        (b"# just a heading\n\nsome words\n", "line 1: no date in the title line"),
        (("x" * (300 * 1024)).encode(), "file too large"),
        (b"", "empty file"),
    ):
        form = FormData()
        form.add_field("csrf_token", console.field)
        form.add_field("file", data, filename="issue.md", content_type="text/markdown")
        response = await console.client.post("/console/issues/new", data=form, allow_redirects=False)
        assert 400 <= response.status < 500, reason
        assert reason in (await response.text()).replace("&#39;", "'")
    nothing = await console.post("/console/issues/new", {"markdown": "  "})
    assert nothing.status == 400
    assert "choose an issue file or paste its Markdown" in await nothing.text()
    assert await _dates(console) == [DAY]


async def test_an_issue_whose_date_is_taken_is_replaced_only_when_confirmed(console: SignedIn) -> None:
    changed = (DEMO_DIR / f"{DAY}.md").read_text(encoding="utf-8").replace("高通", "高通公司", 1)
    await console.page("/console/issues/new")
    asked = await console.post("/console/issues/new", {"markdown": changed})
    assert asked.status == 409
    assert f"{DAY} 这一期已经有了" in await asked.text()
    async with Database(console.database_url) as database:
        before = await IssueStore(database).get(dt.date.fromisoformat(DAY))
    assert before is not None
    assert "高通公司" not in before.sections[0].items[0].title
    replaced = await console.post("/console/issues/new", {"markdown": changed, "replace": "yes"})
    assert replaced.status == 303
    assert (await console.audit())[0].detail.startswith("replaced")


async def test_the_preview_shows_every_channel_from_render_with_sizes_and_frames(console: SignedIn) -> None:
    html = await console.page(f"/console/issues/{DAY}")
    for label in ("Telegram", "WeChat", "email", "WeCom group robot"):
        assert label in html
    bubbles = re.findall(r'<li class="bubble">', html)
    assert len(bubbles) >= 2  # the issue is longer than one Telegram message
    assert f"{len(bubbles)} 条消息" in html
    assert "/ 4,096" in html
    assert "/ 2,048" in html
    assert "/ 85,000" in html
    for name in ("wechat", "email"):
        assert f'src="/console/issues/{DAY}/frame/{name}"' in html
        frame = await console.client.get(f"/console/issues/{DAY}/frame/{name}")
        assert frame.status == 200
        assert frame.headers["Content-Security-Policy"].startswith("sandbox;")
        assert "frame-ancestors 'self'" in frame.headers["Content-Security-Policy"]
        assert "<script" not in await frame.text()
    digest = await console.page(f"/console/issues/{DAY}?digest=1")
    assert len(re.findall(r'<li class="bubble">', digest)) == 1
    assert "还有" in digest  # what fitting cut is said
    actions = [(entry.action, entry.detail) for entry in await console.audit()]
    assert actions[:2] == [("preview", "digest"), ("preview", "")]


async def test_a_test_send_reaches_the_editors_own_chat_and_openid_without_a_subscriber(
    console: SignedIn,
) -> None:
    await console.page(f"/console/issues/{DAY}")
    sent = await console.post(
        f"/console/issues/{DAY}/test-send", {"channel": "telegram", "address": "424242"}
    )
    assert sent.status == 200
    assert "已试发到 Telegram 424242" in await sent.text()
    assert len(console.telegram.sent_to(424242)) >= 2
    previewed = await console.post(
        f"/console/issues/{DAY}/test-send", {"channel": "wechat", "address": EDITOR_OPENID}
    )
    assert "已试发到" in await previewed.text(), await previewed.text()
    assert len(console.wechat.previews_to(EDITOR_OPENID)) == 1
    bad = await console.post(
        f"/console/issues/{DAY}/test-send", {"channel": "telegram", "address": "@someone"}
    )
    assert bad.status == 400
    assert "试发失败：a Telegram chat id is an integer" in await bad.text()
    details = [entry.detail for entry in await console.audit() if entry.action == "test_send"]
    assert details == [f"wechat → {EDITOR_OPENID}", "telegram → 424242"]


async def test_console_pages_need_a_session_and_forms_need_the_csrf_field(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}")
    forged = await console.client.post(
        f"/console/issues/{DAY}/test-send",
        data={"csrf_token": "x" * 43, "channel": "telegram", "address": "424242"},
        allow_redirects=False,
    )
    assert forged.status == 403
    assert console.telegram.sent_to(424242) == []
    console.client.session.cookie_jar.clear()
    for path in ("/console/issues/new", f"/console/issues/{DAY}", "/console/broadcasts", "/console/audit"):
        response = await console.client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/console/sign-in"), path
    assert (await console.client.post("/console/issues/new", data={}, allow_redirects=False)).status == 401


def test_the_wechat_text_reply_shows_its_links_as_links_and_nothing_else_as_markup() -> None:
    from bot.console.previews import wechat_text_markup

    text = '【论文】\n1. <a href="https://arxiv.org/abs/1">一篇 ＜b＞ 论文</a>\n<a href="javascript:alert(1)">x</a> <i>'
    assert str(wechat_text_markup(text)) == (
        '【论文】\n1. <a href="https://arxiv.org/abs/1">一篇 ＜b＞ 论文</a>\n'
        "&lt;a href=&#34;javascript:alert(1)&#34;&gt;x&lt;/a&gt; &lt;i&gt;"
    )


async def test_a_form_body_that_cannot_be_read_gets_a_400_page_not_a_crash(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}")
    for body, content_type in (
        (b"channel=\xff\xfe&address=1", "application/x-www-form-urlencoded"),
        (b"channel=x", "application/x-www-form-urlencoded; charset=no-such-charset"),
        (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (
            b"--b\r\nContent-Disposition: form-data; name=" + b"x" * 9000 + b"\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ):
        response = await console.client.post(
            f"/console/issues/{DAY}/test-send", data=body, headers={"Content-Type": content_type}
        )
        assert response.status == 400, body[:40]
        assert "the form could not be read" in await response.text()
    assert console.telegram.sent_to(424242) == []


async def test_a_refused_test_send_leaves_no_tracked_links_behind(console: SignedIn) -> None:
    from sqlalchemy import func, select

    from storage.tables import LinkRow, core_table

    async def links() -> int:
        async with Database(console.database_url) as database, database.transaction() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(core_table(LinkRow)))).scalar_one()
            )

    console.telegram.blocked.add(777)  # refused at the first message: nothing went out
    await console.page(f"/console/issues/{DAY}")
    refused = await console.post(
        f"/console/issues/{DAY}/test-send", {"channel": "telegram", "address": "777"}
    )
    assert refused.status == 400
    assert await links() == 0
    sent = await console.post(
        f"/console/issues/{DAY}/test-send", {"channel": "telegram", "address": "424242"}
    )
    assert sent.status == 200
    assert await links() > 0  # the message's tracked links can be followed
