"""End-to-end tests of the editors' console in a real browser: Debian's Chromium driven by Playwright.

`console_server` runs the real app (create_app) in the test's own event loop, on a free port of
127.0.0.1, over a fresh SQLite database holding the demo issues and two editor accounts. Requests from
127.0.0.1 may name their client in X-Forwarded-For (the server trusts it, as it trusts a proxy), so that
one test can play people at different addresses: the sign-in limits count per address.

`open_page` opens a page in a fresh browser context (1280x800, its own cookies) and watches it: a
Content-Security-Policy violation or an uncaught script error on any page of the test fails the test
when it ends. `screenshot` saves a page at 1280 and 390 pixels wide under var/screenshots/, for a person
to look at.

Playwright's own browser download is not used: Chromium comes from Debian (/usr/bin/chromium, installed
by scripts/test.sh when it runs as root). Without it these tests fail; they never skip.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import (
    Error as PlaywrightError,
)
from playwright.async_api import (
    Response as PageResponse,
)

from bot.app import create_app
from bot.console.passwords import hash_password
from bot.importing import import_paths
from bot.services import SERVICES, open_storage
from bot.settings import Settings
from content.demo import demo_issue_dir
from storage.editors import EditorStore
from storage.subscribers import SubscriberStore
from tests.bot.helpers import sqlite_url
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, running_fake_wechat

CHROMIUM = Path("/usr/bin/chromium")
# Playwright turns Chromium's sandbox off itself (chromium_sandbox=False): as root it will not start
# with it. The rest keeps a headless Chromium off the network it cannot reach here anyway.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 390, "height": 844}  # a phone
# Long enough for a slow CI machine, short enough that a hung page fails the test quickly.
TIMEOUT_MS = 15_000
MAX_SHOT_HEIGHT = 12_000  # px: a screenshot taller than this is cut (the longest page is ~5,000 at 390)
SETTLE_MS = 300

SECRET_KEY = "browser-tests-secret-key-0123456789abcdef"
EDITOR = "editor-li"
OTHER_EDITOR = "editor-wang"
PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "纸上得来终觉浅 绝知此事要躬行"
SUBSCRIBER_CHATS = (200_001, 200_002, 200_003, 200_004)
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat gives them


@dataclass
class ConsoleServer:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    app: web.Application
    telegram: FakeTelegram
    wechat: FakeWeChatApi
    subscribers: tuple[int, ...] = SUBSCRIBER_CHATS


@pytest.fixture
async def console_server(tmp_path: Path) -> AsyncIterator[ConsoleServer]:
    """The service with Telegram and WeChat on (their fake APIs) and `serve`'s own broadcast worker."""
    async with (
        running_fake_telegram() as telegram,
        running_fake_wechat() as wechat,
        _served(tmp_path, telegram, wechat) as server,
    ):
        yield server


@contextlib.asynccontextmanager
async def _served(
    tmp_path: Path, telegram: FakeTelegram, wechat: FakeWeChatApi
) -> AsyncIterator[ConsoleServer]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # the server takes this socket: no race for the port
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = Settings(
            database_url=sqlite_url(tmp_path / "console.db"),
            public_url=url,
            secret_key=SECRET_KEY,
            trusted_proxies="127.0.0.1",
            track_links=True,
            telegram_token=TOKEN,
            telegram_secret="a-webhook-secret",
            telegram_api_url=telegram.url,
            wechat_appid=APPID,
            wechat_secret=SECRET,
            wechat_token="a-wechat-token",
            wechat_aes_key=WECHAT_AES_KEY,
            wechat_api_url=wechat.url,
            wechat_thumb_media_id="a-cover-media-id",
            serve_worker="on",
            rate_limits=False,
            worker_poll_seconds=0.1,
        )
        async with open_storage(settings) as storage:  # migrates, as every start does
            report = await import_paths([demo_issue_dir()], storage.issues)
            assert report.imported, "the demo issues did not import"
            await SubscriberStore(storage.database).import_active(
                [("telegram", str(chat), ()) for chat in SUBSCRIBER_CHATS]
            )
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            editors = EditorStore(app[SERVICES].storage.database)
            await editors.add(EDITOR, hash_password(PASSWORD))
            await editors.add(OTHER_EDITOR, hash_password(OTHER_PASSWORD))
            await web.SockSite(runner, sock).start()
            yield ConsoleServer(url, app, telegram, wechat)
        finally:
            await runner.cleanup()


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; its absence fails the browser tests (a skip would pass a run that tested
    nothing in a browser)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/test.sh (as root it installs Debian's chromium and "
            "fonts-wqy-microhei), or apt-get install chromium fonts-wqy-microhei",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    # Per test: starting Playwright and Chromium takes about 0.6 s here, not worth an event loop shared
    # between tests (the server runs in the test's own loop).
    playwright: Playwright = await async_playwright().start()
    try:
        launched = await playwright.chromium.launch(
            executable_path=chromium, chromium_sandbox=False, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()
    finally:
        await playwright.stop()


@dataclass
class Watch:
    """What went wrong in the pages' scripts, by page URL."""

    problems: list[str] = field(default_factory=list)

    def console(self, page: Page, message: ConsoleMessage) -> None:
        # "Failed to load resource: ... 401" and the like are the refusals under test, not problems.
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(f"{page.url}: {message.text}")

    def page_error(self, page: Page, error: PlaywrightError) -> None:
        self.problems.append(f"{page.url}: uncaught {error.message}")


OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
def watch() -> Watch:
    """The problems seen on the test's pages: a test that provokes one on purpose clears it."""
    return Watch()


@pytest.fixture
async def open_page(console_server: ConsoleServer, browser: Browser, watch: Watch) -> AsyncIterator[OpenPage]:
    """open_page(client=None, javascript=True): a page in a fresh context (no cookies) on the server.
    `client` is the address the server takes the browser to come from (X-Forwarded-For)."""
    contexts: list[BrowserContext] = []

    async def open_one(client: str | None = None, *, javascript: bool = True) -> Page:
        context = await browser.new_context(
            base_url=console_server.url,
            viewport=WIDE,
            java_script_enabled=javascript,
            extra_http_headers={"X-Forwarded-For": client} if client else None,
            locale="zh-CN",
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda message: watch.console(page, message))
        page.on("pageerror", lambda error: watch.page_error(page, error))
        return page

    try:
        yield open_one
    finally:
        for context in contexts:
            await context.close()
    assert not watch.problems, "\n".join(watch.problems)


async def screenshot(page: Page, name: str) -> list[Path]:
    """The page as it looks at 1280 and at 390 pixels wide: var/screenshots/NAME-1280.png, NAME-390.png
    (whole pages). The page is left at 1280."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for size in (WIDE, NARROW):
        # The window is made as tall as the page rather than asking for a "full page" screenshot:
        # Chromium leaves sandboxed (cross-origin) iframes below the first screen blank in those.
        await page.set_viewport_size(size)
        height = await page.evaluate("document.documentElement.scrollHeight")
        await page.set_viewport_size(
            {"width": size["width"], "height": min(max(height, size["height"]), MAX_SHOT_HEIGHT)}
        )
        await page.wait_for_load_state("load")
        await page.wait_for_timeout(SETTLE_MS)  # frames laid out at the new size paint
        path = SCREENSHOTS / f"{name}-{size['width']}.png"
        await page.screenshot(path=path)
        assert path.stat().st_size > 2_000, f"{path} looks empty"
        paths.append(path)
    await page.set_viewport_size(WIDE)
    return paths


async def sign_in(page: Page, name: str, password: str) -> PageResponse:
    """Fill in and send the sign-in form as a person would; the response the browser ended on (the home
    page after a sign-in, else the form again or a refusal)."""
    await page.goto("/console/sign-in")
    await page.get_by_label("名字").fill(name)
    await page.get_by_label("密码").fill(password)
    return await submit(page, "登录")


async def submit(page: Page, button: str) -> PageResponse:
    """Click a form's button and wait for the page it leads to."""
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name=button).click()
    response = await navigation.value
    assert response is not None
    return response
