"""After the send, in the console: a broadcast's figures per channel and link, filtered clicks said, CSV
export, fixing a link, and issues compared. The broadcast goes through `serve`'s worker to the fake
Telegram API; clicks arrive at /r/ as readers, preview bots and scanners send them."""

from __future__ import annotations

import asyncio
import csv
import io
import re

from bot.click_buffer import CLICKS
from tests.bot.console.conftest import CHATS, DAY, SignedIn

PERSON = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
OTHER_PERSON = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
PREVIEW_BOT = "TelegramBot (like TwitterBot)"
SCANNER = ""  # an empty user agent: a scanner, not a reader
FIXED = "https://example.org/fixed"


async def _sent_broadcast(console: SignedIn) -> str:
    await console.page(f"/console/issues/{DAY}/broadcast")
    started = await console.post(
        f"/console/issues/{DAY}/broadcast", [("channel", "telegram"), ("when", "now")]
    )
    assert started.status == 303
    page = started.headers["Location"]
    for _ in range(200):
        if "完成" in await console.page(f"{page}/progress"):
            return page
        await asyncio.sleep(0.05)
    raise AssertionError("the broadcast did not finish")


def _tokens(console: SignedIn) -> list[str]:
    texts = [message["text"] for message in console.telegram.sent_to(CHATS[0])]
    return list(dict.fromkeys(re.findall(r'href="http://127\.0\.0\.1/r/([A-Za-z0-9_-]+)"', "\n".join(texts))))


async def _click(console: SignedIn, token: str, agent: str, client: str) -> str:
    response = await console.client.get(
        f"/r/{token}", headers={"User-Agent": agent, "X-Forwarded-For": client}, allow_redirects=False
    )
    assert response.status == 302
    return response.headers["Location"]


async def test_the_report_counts_people_not_bots_nor_repeats_and_a_fixed_link_is_followed(
    console: SignedIn,
) -> None:
    page = await _sent_broadcast(console)
    first, second = _tokens(console)[:2]
    await _click(console, first, PERSON, "198.51.100.1")
    await _click(console, first, PERSON, "198.51.100.1")  # the same reader within 5 minutes: once
    await _click(console, first, OTHER_PERSON, "198.51.100.2")
    await _click(console, second, PERSON, "198.51.100.1")
    await _click(console, first, PREVIEW_BOT, "149.154.161.1")
    await _click(console, second, SCANNER, "203.0.113.9")
    await console.client.app[CLICKS].flush()  # type: ignore[index]

    html = await console.page(f"{page}/stats")
    telegram = re.search(r'<tr><th scope="row">Telegram</th>(.*?)</tr>', html, re.S)
    assert telegram is not None
    cells = re.findall(r'<td class="num">([^<]*)', telegram.group(1))
    assert cells[0].strip() == str(len(CHATS))  # delivered
    assert "3（3）" in telegram.group(1)  # 3 clicks counted: two readers on one link, one on the other
    assert "没有计入的点击 3 次" in html  # the repeat, the preview bot, the scanner
    assert 'data-chart="time"' in html

    links = list(
        csv.reader(
            io.StringIO(
                (await (await console.client.get(f"{page}/stats.csv?part=links")).text()).lstrip("\ufeff")
            )
        )
    )
    assert links[0] == ["url", "section", "title", "clicks", "unique_clicks"]
    assert [row[3:] for row in links[1:3]] == [["2", "2"], ["1", "1"]]
    assert all(row[1] and row[2] for row in links[1:3])  # each link with its section and item title
    channels = list(
        csv.reader(
            io.StringIO(
                (await (await console.client.get(f"{page}/stats.csv?part=channels")).text()).lstrip("\ufeff")
            )
        )
    )
    assert channels[1][0] == "telegram"

    original = links[1][0]
    fixed = await console.post(f"{page}/links", {"url": original, "new_url": FIXED})
    assert fixed.status == 200
    assert f"已改：之后点 {original}" in (await fixed.text()).replace("&amp;", "&")
    assert await _click(console, first, OTHER_PERSON, "198.51.100.3") == FIXED
    refused = await console.post(f"{page}/links", {"url": FIXED, "new_url": "javascript:alert(1)"})
    assert refused.status == 400
    assert await _click(console, first, OTHER_PERSON, "198.51.100.4") == FIXED
    entries = [(entry.action, entry.detail) for entry in await console.audit() if entry.action == "fix_link"]
    assert entries == [("fix_link", f"{original} → {FIXED}")]


async def test_compare_lists_the_broadcasts_with_their_rates(console: SignedIn) -> None:
    page = await _sent_broadcast(console)
    html = await console.page("/console/compare?n=5")
    assert "只有一次发送" in html
    assert f'<a href="{page}/stats">看它的效果</a>' in html
    assert (await console.client.get("/console/compare?n=abc")).status == 200
