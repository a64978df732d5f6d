"""Email sign-up as a reader's browser does it: the service with a real SMTP server (aiosmtpd) and one
stored issue, whose page hands out the sign-up form's CSRF cookie and field; and further browsers
coming from other loopback addresses (127.0.0.2...), which the service counts as other clients.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, ClientSession, CookieJar, TCPConnector
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.csrf import FIELD
from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.subscriptions import SIGNUP, EmailSignup
from bot.tokens import Purpose, SubscriberTokens
from content.parser import parse_issue
from content.source import decode_issue
from storage.subscribers import Subscriber
from tests.bot.helpers import minimal_issue, sqlite_url
from tests.fakes.smtp import FakeSmtp, free_port, running_fake_smtp

SECRET_KEY = "subscription-tests-secret-key-0123456789"
READER = "Reader.Name@Example.com"
DAY = dt.date(2021, 7, 18)
ISSUE_PAGE = f"/issues/{DAY.isoformat()}"
CONFIRM_LINK = re.compile(r"http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_-]+")
_CSRF_INPUT = re.compile(rf'<input type="hidden" name="{FIELD}" value="([^"]*)">')


def csrf_field(html: str) -> str:
    found = _CSRF_INPUT.search(html)
    assert found is not None, "the page has no sign-up form"
    return found.group(1)


@dataclass
class Browser:
    """One visitor: its own cookies, the form field its issue page gave it."""

    session: ClientSession
    base_url: str
    field: str | None = None

    async def open_issue_page(self) -> ClientResponse:
        page = await self.session.get(self.base_url + ISSUE_PAGE)
        assert page.status == 200
        self.field = csrf_field(await page.text())
        return page

    async def sign_up(
        self,
        email: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        if self.field is None:
            await self.open_issue_page()
        assert self.field is not None
        data = {"email": email, FIELD: self.field, **(extra or {})}
        return await self.session.post(self.base_url + "/subscribe", data=data, headers=headers)


@dataclass
class Service:
    client: TestClient[Any, Any]
    smtp: FakeSmtp
    public_url: str
    browser: Browser = field(init=False)

    def __post_init__(self) -> None:
        self.browser = Browser(self.client.session, self.public_url)

    @property
    def services(self) -> Services:
        services: Services = self.client.app[SERVICES]
        return services

    @property
    def signup(self) -> EmailSignup:
        signup: EmailSignup = self.client.app[SIGNUP]
        return signup

    async def sign_up(self, email: str, **fields: str) -> ClientResponse:
        """As the reader's browser: the issue page first (once), then the form with its CSRF field."""
        return await self.browser.sign_up(email, extra=fields)

    async def subscriber(self, address: str = READER) -> Subscriber:
        found = await self.services.subscribers.get("email", address)
        assert found is not None
        return found

    def token(self, purpose: Purpose, subscriber: Subscriber, now: dt.datetime | None = None) -> str:
        return SubscriberTokens(SECRET_KEY).make(purpose, subscriber, now or dt.datetime.now(dt.UTC))

    @asynccontextmanager
    async def other_browser(self, local_ip: str) -> AsyncIterator[Browser]:
        """A visitor connecting from `local_ip` (a loopback address such as 127.0.0.2)."""
        connector = TCPConnector(local_addr=(local_ip, 0))
        async with ClientSession(connector=connector, cookie_jar=CookieJar(unsafe=True)) as session:
            yield Browser(session, self.public_url)


@asynccontextmanager
async def running_signup(
    tmp_path: Path, *, smtp_url: str | None = None, **settings: Any
) -> AsyncIterator[Service]:
    """The app on a free loopback port with one issue stored, sending to a fake SMTP server (or to
    `smtp_url`, while the fake runs unused)."""
    with running_fake_smtp() as smtp:
        port = free_port()
        public_url = f"http://127.0.0.1:{port}"
        values: dict[str, Any] = {
            "database_url": sqlite_url(tmp_path / "subscriptions.db"),
            "public_url": public_url,
            "secret_key": SECRET_KEY,
            "smtp_url": smtp_url or smtp.url,
            "mail_from": "嵌入式AI简报 <newsletter@jianbao.example>",
            "track_links": True,
        }
        app = create_app(Settings(**(values | settings)))
        async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
            service = Service(client, smtp, public_url)
            text = minimal_issue(DAY.isoformat())
            await service.services.storage.issues.save(parse_issue(decode_issue(text.encode())), text)
            yield service
