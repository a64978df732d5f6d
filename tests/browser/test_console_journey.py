"""An editor's whole journey in a real browser, against the fake Telegram and WeChat APIs and `serve`'s
own worker: sign in, upload a new issue with an error, fix it, preview every channel, test-send to
Telegram, schedule the broadcast, watch its progress reach "完成" by itself, and find it all in the audit
trail. Screenshots of every page land in var/screenshots/."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from playwright.async_api import expect

from tests.bot.helpers import minimal_issue
from tests.browser.conftest import EDITOR, PASSWORD, ConsoleServer, OpenPage, screenshot, sign_in, submit

NEW_DAY = "2026-12-01"
EDITOR_CHAT = "424242"
# Far enough ahead that the page shows it waiting, near enough that the test does not wait long.
SCHEDULE_AHEAD = dt.timedelta(seconds=6)
DONE_TIMEOUT_MS = 30_000


def _issue_text() -> str:
    # Long enough to take more than one Telegram message, so the preview has several bubbles.
    items = "".join(
        f"- [第 {n} 条新闻：{'端侧大模型推理又快了一倍，' * 4}完 | 量子位](https://example.com/news/{n})\n"
        f"摘要：{'这是一段足够长的摘要，说明这条新闻讲了什么、为什么值得一读。' * 12}\n\n"
        for n in range(2, 80)
    )
    return minimal_issue(NEW_DAY).replace("## 论文\n", items + "## 论文\n", 1)


async def test_an_editor_brings_in_previews_tests_schedules_and_watches_an_issue(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page()
    home = await sign_in(page, EDITOR, PASSWORD)
    assert home.status == 200
    await expect(page.get_by_role("heading", name="最近的简报")).to_be_visible()
    await screenshot(page, "console-home")

    # 1. A file with an error: refused with its line, nothing stored.
    good = _issue_text()
    broken = good.replace(f"({NEW_DAY})", "(2026-13-01)", 1)
    await page.get_by_role("link", name="导入新一期").click()
    await page.get_by_label("上传 Markdown 文件").set_input_files(
        files=[{"name": "new-issue.md", "mimeType": "text/markdown", "buffer": broken.encode()}]
    )
    refused = await submit(page, "检查并导入")
    assert refused.status == 422
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("没有保存")
    await expect(alert).to_contain_text("line 1: the title's date '2026-13-01' does not exist")
    await expect(page.locator("pre.lines .bad")).to_contain_text("(2026-13-01)")
    await screenshot(page, "console-import-error")
    assert (await page.request.get(f"/issues/{NEW_DAY}")).status == 404  # nothing stored

    # 2. Fixed in the form it came back in, and imported.
    await page.get_by_label("上传 Markdown 文件").set_input_files(files=[])
    await page.get_by_label("或者粘贴 Markdown").fill(good)
    preview = await submit(page, "检查并导入")
    assert preview.status == 200
    assert page.url.endswith(f"/console/issues/{NEW_DAY}")

    # 3. Every channel side by side, from render's own output, with sizes against limits.
    telegram = page.locator("section.channel-bubbles")
    bubbles = await telegram.locator("li.bubble").count()
    assert bubbles >= 2
    await expect(telegram).to_contain_text(f"{bubbles} 条消息")
    await expect(telegram).to_contain_text("/ 4,096")
    wechat_frame = page.frame_locator("section.channel-phone iframe")
    await expect(wechat_frame.get_by_role("heading", level=1)).to_contain_text("嵌入式AI简报")
    await expect(page.locator("section.channel-phone")).to_contain_text("/ 2,048")
    mail_frame = page.frame_locator("section.channel-mail iframe")
    await expect(mail_frame.locator("body")).to_contain_text("第 2 条新闻")
    await screenshot(page, "console-preview")
    await page.get_by_role("link", name="看一条消息的摘要版").click()
    await expect(page.locator("section.channel-bubbles li.bubble")).to_have_count(1)
    await expect(page.locator("section.channel-bubbles .cut")).to_contain_text("还有")
    await screenshot(page, "console-preview-digest")
    await page.get_by_role("link", name="看完整版").click()

    # 4. A test send to the editor's own Telegram chat, which no subscriber row names.
    await page.get_by_label("渠道").select_option("telegram")
    await page.get_by_label("地址").fill(EDITOR_CHAT)
    sent = await submit(page, "试发")
    assert sent.status == 200
    await expect(page.get_by_role("status")).to_contain_text(
        f"已试发到 Telegram {EDITOR_CHAT}（{bubbles} 条）"
    )
    assert len(console_server.telegram.sent_to(int(EDITOR_CHAT))) == bubbles

    # 5. The broadcast: the audience per channel, then a schedule a few seconds ahead.
    await page.get_by_role("link", name="发送…").click()
    await expect(page.get_by_role("heading", name=re.compile("发送"))).to_be_visible()
    audience = page.locator("tr", has=page.get_by_label("Telegram"))
    await expect(audience).to_contain_text(str(len(console_server.subscribers)))
    await screenshot(page, "console-broadcast-form")
    wechat_box = page.get_by_role("checkbox", name="WeChat")
    if await wechat_box.is_checked():
        await wechat_box.uncheck()  # this journey sends on Telegram only
    for robot in ("WeCom group robot (企业微信群机器人)", "Feishu group bot (飞书群机器人)"):
        box = page.get_by_role("checkbox", name=robot)
        if await box.is_checked():
            await box.uncheck()
    zone = zoneinfo.ZoneInfo("Asia/Shanghai")  # JIANBAO_TIMEZONE's default, which the form says
    at = dt.datetime.now(zone) + SCHEDULE_AHEAD
    await page.get_by_label("定时：").check()
    await page.get_by_label("发送时间").fill(at.strftime("%Y-%m-%dT%H:%M:%S"))
    started = await submit(page, "发送")
    assert started.status == 200
    assert re.search(r"/console/broadcasts/\d+$", page.url)

    # 6. Progress that updates by itself (htmx polling; the page is never reloaded) until done.
    await expect(page.locator("#progress")).to_contain_text("定时")
    await screenshot(page, "console-broadcast-scheduled")
    await page.evaluate("window.__not_reloaded = true")
    await expect(page.locator("#progress .state")).to_have_text("完成", timeout=DONE_TIMEOUT_MS)
    assert await page.evaluate("window.__not_reloaded") is True
    row = page.locator("#progress tr", has=page.get_by_role("rowheader", name="Telegram"))
    await expect(row.locator("td").first).to_have_text(str(len(console_server.subscribers)))
    await screenshot(page, "console-broadcast-done")
    for chat in console_server.subscribers:
        assert len(console_server.telegram.sent_to(chat)) == bubbles

    # 7. The audit trail names who did what.
    await page.get_by_role("link", name="记录", exact=True).click()
    table = page.locator("table.list tbody")
    for action in ("import", "preview", "test_send", "send"):
        await expect(table.locator("tr", has_text=action).first).to_contain_text(EDITOR)
    await expect(table).to_contain_text(f"issue {NEW_DAY}")
    await expect(table).to_contain_text(f"telegram → {EDITOR_CHAT}")
    await screenshot(page, "console-audit")


async def test_without_javascript_every_form_still_works_and_progress_refreshes_itself(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page(javascript=False)
    await sign_in(page, EDITOR, PASSWORD)
    await page.goto("/console/issues/new")
    await page.get_by_label("或者粘贴 Markdown").fill(_issue_text())
    imported = await submit(page, "检查并导入")
    assert imported.status == 200
    assert page.url.endswith(f"/console/issues/{NEW_DAY}")
    await page.get_by_label("地址").fill(EDITOR_CHAT)
    await page.get_by_label("渠道").select_option("telegram")
    assert (await submit(page, "试发")).status == 200
    await page.get_by_role("link", name="发送…").click()
    for name in ("WeChat", "WeCom group robot (企业微信群机器人)", "Feishu group bot (飞书群机器人)"):
        box = page.get_by_role("checkbox", name=name)
        if await box.is_checked():
            await box.uncheck()
    started = await submit(page, "发送")
    assert started.status == 200
    # No htmx: the page asks the browser to reload it (a <noscript> refresh) until the broadcast is done.
    await expect(page.locator("#progress .state")).to_have_text("完成", timeout=DONE_TIMEOUT_MS)
    paused = page.get_by_role("button", name="暂停")
    assert await paused.count() == 0  # nothing left to pause once done
    for chat in console_server.subscribers:
        assert console_server.telegram.sent_to(chat)
