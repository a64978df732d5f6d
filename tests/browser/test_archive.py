"""The public archive in a real browser: an issue page and the search page as a reader on a phone and on a
desktop sees them, light and dark; search without JavaScript; and axe-core's accessibility check.

Screenshots go to var/screenshots/archive-{page}-{light|dark}-{width}.png, for a person to look at.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.async_api import Browser, Page, ViewportSize

from tests.browser.conftest import (
    NARROW,
    SCREENSHOTS,
    SETTLE_MS,
    TIMEOUT_MS,
    WIDE,
    ConsoleServer,
    OpenPage,
)

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # as its README.md says
ISSUE = "/issues/2020-07-02"
SEARCH = "/search?q=%E9%87%8F%E5%8C%96"  # 量化
PAGES = {"issue": ISSUE, "archive": "/issues", "search": SEARCH}
Scheme = Literal["light", "dark"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")
SIZES: tuple[ViewportSize, ...] = (NARROW, WIDE)
MAX_SHOT_HEIGHT = 12_000


async def _shoot(page: Page, name: str, scheme: Scheme) -> list[Path]:
    """The page at 390 and 1280 pixels wide in one colour scheme: archive-NAME-SCHEME-WIDTH.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.emulate_media(color_scheme=scheme)
    paths = []
    for size in SIZES:
        await page.set_viewport_size(size)
        height = await page.evaluate("document.documentElement.scrollHeight")
        await page.set_viewport_size(
            {"width": size["width"], "height": min(max(height, size["height"]), MAX_SHOT_HEIGHT)}
        )
        await page.wait_for_timeout(SETTLE_MS)
        path = SCREENSHOTS / f"archive-{name}-{scheme}-{size['width']}.png"
        await page.screenshot(path=path)
        assert path.stat().st_size > 2_000, f"{path} looks empty"
        paths.append(path)
    await page.set_viewport_size(WIDE)
    return paths


async def _sideways(page: Page) -> int:
    """How many pixels the page is wider than the window (a reader would have to scroll sideways)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


async def test_an_issue_page_reads_well_on_a_phone_and_a_desktop(open_page: OpenPage) -> None:
    page = await open_page()
    response = await page.goto(ISSUE)
    assert response is not None
    assert response.status == 200
    toc = page.get_by_role("navigation", name="本期目录")
    assert await toc.get_by_role("link").count() == 4
    await toc.get_by_role("link", name="论文").click()
    assert page.url.endswith("#section-2")
    body = page.locator("body")
    assert await body.evaluate("b => getComputedStyle(b).fontSize") == "17px"
    light = await body.evaluate("b => getComputedStyle(b).backgroundColor")
    await page.emulate_media(color_scheme="dark")
    assert await body.evaluate("b => getComputedStyle(b).backgroundColor") != light
    await page.set_viewport_size(NARROW)
    assert await _sideways(page) <= 0
    for scheme in SCHEMES:
        await _shoot(page, "issue", scheme)


async def test_search_results_on_a_phone_and_a_desktop(open_page: OpenPage) -> None:
    page = await open_page()
    await page.goto("/issues")
    await page.get_by_role("searchbox", name="搜索往期内容").fill("量化")
    async with page.expect_navigation():
        await page.get_by_role("button", name="搜索").click()
    assert "/search?q=" in page.url
    results = page.locator("ol.results > li")
    assert await results.count() == 10
    assert await results.first.locator("mark").count() > 0
    async with page.expect_navigation():
        await results.first.get_by_role("link").click()
    assert "#item-" in page.url
    target = page.url.split("#", 1)[1]
    assert await page.locator(f"#{target}").is_visible()
    await page.goto(SEARCH)
    await page.set_viewport_size(NARROW)
    assert await _sideways(page) <= 0
    for scheme in SCHEMES:
        await _shoot(page, "search", scheme)


async def test_search_works_without_javascript(open_page: OpenPage) -> None:
    page = await open_page(javascript=False)
    await page.goto(ISSUE)
    await page.get_by_role("searchbox").fill("量化")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="搜索").click()
    response = await navigation.value
    assert response is not None
    assert response.headers["content-type"].startswith("text/html")
    assert await page.locator("ol.results mark").count() > 0
    async with page.expect_navigation():
        await page.get_by_role("link", name="下一页 →").click()
    assert "offset=10" in page.url
    assert await page.get_by_role("link", name="← 上一页").count() == 1


def _axe_source() -> str:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "axe.min.js is not the vendored release"
    return source.decode()


async def _violations(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(content=_axe_source())
    result: dict[str, Any] = await page.evaluate("async () => await axe.run(document)")
    assert len(result["passes"]) > 10, "axe checked next to nothing: is this the page?"
    found: list[dict[str, Any]] = result["violations"]
    return found


@pytest.mark.parametrize("name", sorted(PAGES))
async def test_the_archive_pages_pass_axe(console_server: ConsoleServer, browser: Browser, name: str) -> None:
    """No serious or critical axe violations, light or dark, on a phone or a desktop. The page's CSP
    forbids the injected script: this context alone bypasses it (the other tests keep it)."""
    context = await browser.new_context(base_url=console_server.url, bypass_csp=True, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    problems = []
    try:
        page = await context.new_page()
        for scheme in SCHEMES:
            for size in SIZES:
                await page.set_viewport_size(size)
                await page.emulate_media(color_scheme=scheme)
                await page.goto(PAGES[name])
                for violation in await _violations(page):
                    if violation["impact"] in ("serious", "critical"):
                        targets = [node["target"] for node in violation["nodes"][:3]]
                        problems.append(
                            f"{scheme} {size['width']}: {violation['id']} ({violation['impact']}) "
                            f"{len(violation['nodes'])} nodes, e.g. {targets}"
                        )
    finally:
        await context.close()
    assert not problems, "\n".join(problems)
