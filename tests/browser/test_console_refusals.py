"""What the console refuses, in a real browser: a missing session, a wrong CSRF token, a sixth wrong
password (even a right one, once the limit is reached); and that none of it keeps another editor out.
Every page is also checked for its Content-Security-Policy and for htmx loading under it."""

from __future__ import annotations

from playwright.async_api import Page, expect
from playwright.async_api import Response as PageResponse

from bot.console.auth import COOKIE, LOGIN_FAILURES, LOGIN_WINDOW_SECONDS
from bot.http_policy import CONSOLE_CONTENT_SECURITY_POLICY
from tests.browser.conftest import (
    EDITOR,
    OTHER_EDITOR,
    OTHER_PASSWORD,
    PASSWORD,
    ConsoleServer,
    OpenPage,
    Watch,
    screenshot,
    sign_in,
    submit,
)

ATTACKER = "198.51.100.66"
ELSEWHERE = "203.0.113.7"
COLLEAGUE = "192.0.2.10"
WRONG_PASSWORD = "not the password at all"


async def assert_console_page(page: Page, response: PageResponse | None) -> None:
    """A console page as served: its strict policy, and htmx loaded under it, configured not to inject
    styles of its own (the policy would refuse them) nor to evaluate code."""
    assert response is not None
    headers = await response.all_headers()
    assert headers["content-security-policy"] == CONSOLE_CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert await page.evaluate("typeof htmx") == "object"
    config = await page.evaluate("[htmx.config.includeIndicatorStyles, htmx.config.allowEval]")
    assert config == [False, False]
    assert await page.locator("style").count() == 0


async def session_cookie(page: Page) -> str | None:
    cookies = {cookie.get("name"): cookie.get("value") for cookie in await page.context.cookies()}
    return cookies.get(COOKIE)


async def test_without_a_session_the_console_shows_the_sign_in_page_and_takes_no_form(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page()
    response = await page.goto("/console")
    assert response is not None
    assert response.status == 200
    assert page.url == f"{console_server.url}/console/sign-in"
    await expect(page.get_by_role("heading", name="登录编辑台")).to_be_visible()
    await assert_console_page(page, response)
    await screenshot(page, "console-sign-in")

    # A console form posted without a session, even with a sound CSRF pair (this page's): 401.
    field = await page.locator("input[name=csrf_token]").get_attribute("value")
    assert field
    posted = await page.request.post(
        f"{console_server.url}/console/sign-out", form={"csrf_token": field}, max_redirects=0
    )
    assert posted.status == 401
    assert await session_cookie(page) is None


async def test_a_wrong_csrf_token_is_refused_and_signs_nobody_in(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page()
    await page.goto("/console/sign-in")
    await page.get_by_label("名字").fill(EDITOR)
    await page.get_by_label("密码").fill(PASSWORD)
    # Playwright's evaluate is not page script: the page's CSP does not stop it.
    await page.evaluate("document.querySelector('input[name=csrf_token]').value = 'x'.repeat(43)")
    refused = await submit(page, "登录")
    assert refused.status == 403
    await expect(page.locator("body")).to_contain_text("did not come from our page")
    assert await session_cookie(page) is None
    await screenshot(page, "console-refused-csrf")

    again = await page.goto("/console")
    assert again is not None
    assert page.url == f"{console_server.url}/console/sign-in"


async def test_a_sixth_wrong_password_is_refused_but_another_editor_elsewhere_signs_in(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    attacker = await open_page(client=ATTACKER)
    for _ in range(LOGIN_FAILURES):
        wrong = await sign_in(attacker, EDITOR, WRONG_PASSWORD)
        assert wrong.status == 401
        await expect(attacker.get_by_role("alert")).to_have_text("名字或密码不对。")
    await assert_console_page(attacker, wrong)
    await screenshot(attacker, "console-wrong-password")

    sixth = await sign_in(attacker, EDITOR, PASSWORD)  # the right password, too late
    assert sixth.status == 429
    assert 0 < int(await sixth.header_value("Retry-After") or "0") <= LOGIN_WINDOW_SECONDS + 1
    await expect(attacker.locator("body")).to_contain_text("too many wrong passwords")
    assert await session_cookie(attacker) is None
    await screenshot(attacker, "console-refused-too-many")

    # The account is held wherever its editor comes from, until the window has passed...
    elsewhere = await open_page(client=ELSEWHERE)
    assert (await sign_in(elsewhere, EDITOR, PASSWORD)).status == 429
    assert await session_cookie(elsewhere) is None

    # ...but another editor at another address signs in, reads the console and signs out.
    colleague = await open_page(client=COLLEAGUE)
    home = await sign_in(colleague, OTHER_EDITOR, OTHER_PASSWORD)
    assert home.status == 200
    assert colleague.url == f"{console_server.url}/console"
    await expect(colleague.get_by_role("heading", name="最近的简报")).to_be_visible()
    await expect(colleague.locator("header")).to_contain_text(OTHER_EDITOR)
    await expect(colleague.get_by_role("link", name="2021-08-01")).to_be_visible()  # the newest demo issue
    assert await session_cookie(colleague) is not None
    await assert_console_page(colleague, home)
    await screenshot(colleague, "console-home")

    signed_out = await submit(colleague, "退出")
    assert signed_out.status == 200
    assert colleague.url == f"{console_server.url}/console/sign-in"
    assert await session_cookie(colleague) is None


async def test_with_javascript_off_an_editor_signs_in_reads_and_signs_out(
    console_server: ConsoleServer, open_page: OpenPage
) -> None:
    page = await open_page(javascript=False)
    home = await sign_in(page, EDITOR, PASSWORD)
    assert home.status == 200
    assert page.url == f"{console_server.url}/console"
    await expect(page.get_by_role("heading", name="最近的简报")).to_be_visible()
    await expect(page.get_by_role("link", name="2021-08-01")).to_be_visible()
    signed_out = await submit(page, "退出")
    assert signed_out.status == 200
    assert page.url == f"{console_server.url}/console/sign-in"


async def test_the_console_policy_stops_inline_script_in_the_browser(
    open_page: OpenPage, watch: Watch
) -> None:
    """The policy is enforced, not just sent; and a violation is seen (so the other tests' silence means
    their pages had none)."""
    page = await open_page()
    await page.goto("/console/sign-in")
    async with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        await page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.inlineRan = true";
                document.head.append(script);
            }"""
        )
    assert await page.evaluate("window.inlineRan === undefined")
    assert watch.problems
    assert all("Content Security Policy" in problem for problem in watch.problems)
    watch.problems.clear()
