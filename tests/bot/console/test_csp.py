"""The console's Content-Security-Policy: htmx from /static and frames from us, nothing inline; the rest of
the site keeps its policy without scripts; a framed preview's own policy wins over both."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import http_policy
from bot.app import create_app
from bot.console.auth import HTMX_SCRIPT
from bot.http_policy import (
    CONSOLE_CONTENT_SECURITY_POLICY,
    CONTENT_SECURITY_POLICY,
    IFRAME_CONTENT_SECURITY_POLICY,
)
from bot.settings import Settings
from channels.base import TEMPLATE_DIR
from tests.bot.helpers import sqlite_url

VENDOR = TEMPLATE_DIR / "site" / "static" / "vendor"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
_SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "csp.db"),
        public_url="http://127.0.0.1",
        secret_key="console-csp-test-secret-key",
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        yield client


def test_the_console_policy_is_the_sites_plus_scripts_requests_and_frames_from_us() -> None:
    site, console = directives(CONTENT_SECURITY_POLICY), directives(CONSOLE_CONTENT_SECURITY_POLICY)
    assert console.pop("script-src") == "'self'"
    assert console.pop("connect-src") == "'self'"  # htmx's requests go back to us only
    assert console.pop("frame-src") == "'self'"  # the email and WeChat previews
    assert console == site
    assert console["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONSOLE_CONTENT_SECURITY_POLICY  # no inline code, no eval


def test_a_framed_preview_runs_nothing_and_only_we_may_frame_it() -> None:
    preview = directives(IFRAME_CONTENT_SECURITY_POLICY)
    assert preview["sandbox"] == ""  # no allow-scripts, allow-forms, allow-same-origin...
    assert preview["default-src"] == "'none'"
    assert "script-src" not in preview
    assert preview["frame-ancestors"] == "'self'"


async def test_console_pages_get_the_console_policy_and_load_htmx_from_static(
    client: TestClient[Any, Any],
) -> None:
    page = await client.get("/console/sign-in")
    assert page.status == 200
    assert page.headers["Content-Security-Policy"] == CONSOLE_CONTENT_SECURITY_POLICY
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = await page.text()
    tags = _SCRIPT_TAG.findall(html)
    assert tags == [f'<script src="/static/{HTMX_SCRIPT}" defer>']  # one script, a file, nothing inline
    assert """<meta name="htmx-config" content='{"includeIndicatorStyles": false""" in html
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers

    script = await client.get(f"/static/{HTMX_SCRIPT}")
    assert script.status == 200
    assert script.content_type in ("application/javascript", "text/javascript")
    assert hashlib.sha256(await script.read()).hexdigest() == HTMX_SHA256


async def test_the_rest_of_the_site_keeps_its_policy_without_scripts(client: TestClient[Any, Any]) -> None:
    page = await client.get("/issues")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "<script" not in await page.text()


def test_the_vendored_htmx_is_the_one_its_readme_names() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256((VENDOR / Path(HTMX_SCRIPT).name).read_bytes()).hexdigest()
    assert digest == HTMX_SHA256
    assert f"`{digest}`" in readme
    assert "Zero-Clause BSD" in (VENDOR / "htmx.LICENSE").read_text(encoding="utf-8")


async def _html(request: web.Request) -> web.Response:
    return web.Response(text="<p>page</p>", content_type="text/html")


async def _preview(request: web.Request) -> web.Response:
    response = web.Response(text="<p style='color: red'>preview</p>", content_type="text/html")
    response.headers["Content-Security-Policy"] = IFRAME_CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@pytest.mark.parametrize(
    ("path", "policy", "frame_options"),
    [
        ("/console", CONSOLE_CONTENT_SECURITY_POLICY, "DENY"),
        ("/console/issues/2020-07-02", CONSOLE_CONTENT_SECURITY_POLICY, "DENY"),
        ("/console/preview", IFRAME_CONTENT_SECURITY_POLICY, "SAMEORIGIN"),  # the handler's own wins
        ("/consoles", CONTENT_SECURITY_POLICY, "DENY"),  # a prefix of the name is not the console
        ("/issues", CONTENT_SECURITY_POLICY, "DENY"),
    ],
)
async def test_which_policy_a_path_gets(path: str, policy: str, frame_options: str) -> None:
    app = web.Application()
    http_policy.setup(app)
    app.router.add_get("/console/preview", _preview)
    for plain in ("/console", "/console/issues/2020-07-02", "/consoles", "/issues"):
        app.router.add_get(plain, _html)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == policy
        assert response.headers["X-Frame-Options"] == frame_options
