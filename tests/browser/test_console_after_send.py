"""After the send, in a real browser: a broadcast's report with its chart (drawn by uPlot from the table
that stays for screen readers), fixing a link, issues compared, and the subscriber desk. Screenshots of
each page land in var/screenshots/."""

from __future__ import annotations

import datetime as dt
import re

from playwright.async_api import Page, expect
from sqlalchemy import update

from bot.services import SERVICES
from storage.clicks import ClickEvent, ClickStore
from storage.tables import BroadcastRow, core_table
from tests.browser.conftest import EDITOR, PASSWORD, ConsoleServer, OpenPage, screenshot, sign_in, submit

DAY = "2020-07-02"
DONE_TIMEOUT_MS = 30_000


async def _send(page: Page) -> str:
    await page.goto(f"/console/issues/{DAY}/broadcast")
    for name in ("WeChat", "WeCom group robot (企业微信群机器人)", "Feishu group bot (飞书群机器人)"):
        box = page.get_by_role("checkbox", name=name)
        if await box.is_checked():
            await box.uncheck()
    await submit(page, "发送")
    await expect(page.locator("#progress .state")).to_have_text("完成", timeout=DONE_TIMEOUT_MS)
    return page.url


async def _clicks_over_three_days(server: ConsoleServer, tokens: list[str], start: dt.datetime) -> None:
    """Clicks as readers make them after a send: many in the first hours, fewer each day after."""
    events = []
    for hour in range(0, 80):
        for n in range(max(1, 30 - hour // 3)):
            at = start + dt.timedelta(hours=hour, minutes=n % 50)
            events.append(ClickEvent(tokens[n % len(tokens)], at, f"reader-{hour}-{n}"))
    await ClickStore(server.app[SERVICES].storage.database).record(events)


async def test_the_report_of_a_sent_issue_its_chart_a_fixed_link_and_the_subscriber_desk(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page()
    await sign_in(page, EDITOR, PASSWORD)
    broadcast_url = await _send(page)
    text = console_server.telegram.sent_to(console_server.subscribers[0])[0]["text"]
    tokens = list(dict.fromkeys(re.findall(r"/r/([A-Za-z0-9_-]+)", text)))[:6]
    # The report of a send four days ago: its start moved back, its clicks recorded at their times.
    database = console_server.app[SERVICES].storage.database
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=4)
    b = core_table(BroadcastRow)
    async with database.transaction("write") as connection:
        await connection.execute(update(b).values(start_at=start))
    await _clicks_over_three_days(console_server, tokens, start)

    await page.goto(f"{broadcast_url}/stats")
    await expect(page.get_by_role("heading", name=re.compile("发送效果"))).to_be_visible()
    telegram = page.locator("tr", has=page.get_by_role("rowheader", name="Telegram"))
    await expect(telegram.locator("td").first).to_contain_text(str(len(console_server.subscribers)))
    await expect(page.locator(".chart canvas")).to_have_count(2)  # uPlot drew both timelines
    assert await page.locator("#timeline-hourly tbody tr").count() == 73  # 3 days of hours; tables stay
    assert await page.locator("#timeline-daily tbody tr").count() == 5
    await screenshot(page, "console-report")

    first_url = await page.locator("td.url a").first.get_attribute("href")
    assert first_url
    await page.locator("td input[name=new_url]").first.fill("https://example.org/moved")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="改").first.click()
    fixed = await navigation.value
    assert fixed is not None
    assert fixed.status == 200
    await expect(page.get_by_role("status")).to_contain_text("已改")
    await expect(page.locator("td.url a").first).to_have_attribute("href", "https://example.org/moved")

    await page.get_by_role("link", name="和前几期比较").click()
    await expect(page.get_by_role("heading", name=re.compile("最近"))).to_be_visible()
    await screenshot(page, "console-compare")

    await page.goto("/console/subscribers")
    await expect(page.locator("table")).to_contain_text(str(console_server.subscribers[0]))
    await screenshot(page, "console-subscribers")
    row = page.locator("tr", has_text=str(console_server.subscribers[0]))
    await row.get_by_role("link").first.click()
    await expect(page.locator("main")).to_contain_text(DAY)  # the delivery of this broadcast
    await screenshot(page, "console-subscriber")
