"""The sign-up form and its links against the ways they are abused (security issue #11), over HTTP on the
real app with a real SMTP server:

- mail scanners that open (GET, HEAD) every link must not confirm a sign-up: only the page's button does;
- mail bombing: hourly caps per client, per mailbox (+tags and dots ignored) and overall, answered 429
  before anything is stored; a sign-up whose mail cannot be queued is told so (503), not "check your mail";
- forged cross-site posts: the form's double-submit CSRF pair and the Origin header;
- sign-ups never confirmed are deleted once their link has expired;
- logs never hold an address or a token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from bot import subscriptions
from bot.csrf import FIELD
from bot.subscriptions import MAILER_DOWN_SECONDS
from storage.database import Database
from storage.subscribers import SubscriberStatus, SubscriberStore
from tests.bot.helpers import sqlite_url
from tests.bot.signup_helpers import CONFIRM_LINK, ISSUE_PAGE, READER, Service, running_signup
from tests.fakes.smtp import free_port

WINDOW = 3600


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_signup(tmp_path) as service:
        yield service


async def stored(service: Service, address: str) -> SubscriberStatus | None:
    found = await service.services.subscribers.get("email", address)
    return None if found is None else found.status


def retry_after(response: ClientResponse) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= WINDOW
    return seconds


# --- confirmation links: scanners open them, people press the button


async def confirm_path(service: Service) -> str:
    assert (await service.sign_up(READER)).status == 200
    (mail,) = await service.smtp.wait_for(1)
    links: list[str] = CONFIRM_LINK.findall(mail.text)
    assert len(links) == 1
    return links[0].removeprefix(service.public_url)


async def test_opening_a_confirmation_link_changes_nothing(service: Service) -> None:
    path = await confirm_path(service)

    for _ in range(2):  # what link scanners and previews do, some more than once
        assert (await service.client.head(path)).status == 200
        assert (await service.client.get(path)).status == 200

    assert (await service.subscriber()).status == SubscriberStatus.PENDING


async def test_the_confirmation_page_confirms_with_a_plain_form_button(service: Service) -> None:
    path = await confirm_path(service)

    page = await (await service.client.get(path)).text()

    # No JavaScript: a form that posts back to the link itself, with a submit button.
    assert f'<form method="post" action="{path}">' in page
    assert '<button type="submit">确认订阅</button>' in page
    assert "<script" not in page
    assert READER not in page  # a masked address, as on every page
    pressed = await service.client.post(path)
    assert pressed.status == 200
    assert "订阅成功" in await pressed.text()
    assert (await service.subscriber()).status == SubscriberStatus.ACTIVE
    again = await (await service.client.get(path)).text()
    assert "已经订阅" in again
    assert '<form method="post"' not in again  # nothing to press again (the search box is a GET)


# --- caps


async def test_the_eleventh_sign_up_from_one_client_in_an_hour_gets_429_and_stores_nothing(
    service: Service,
) -> None:
    await service.services.subscribers.subscribe("email", "active@example.com")
    for n in range(10):
        assert (await service.sign_up(f"reader{n}@example.com")).status == 200

    refused = await service.sign_up("eleventh@example.com")
    known = await service.sign_up("active@example.com")

    assert refused.status == 429
    retry_after(refused)
    page = await refused.text()
    assert "请稍后再试" in page
    assert await stored(service, "eleventh@example.com") is None
    assert await service.services.subscribers.count() == 11
    # An address that is subscribed gets the very same answer: the cap tells nothing about it.
    assert (known.status, await known.text()) == (429, page)
    await service.smtp.wait_for(10)
    await service.smtp.nothing_more_than(10)
    # The cap is this client's: another one may still sign up.
    async with service.other_browser("127.0.0.2") as other:
        assert (await other.sign_up("eleventh@example.com")).status == 200
    assert await stored(service, "eleventh@example.com") == SubscriberStatus.PENDING


async def test_the_overall_cap_holds_whichever_clients_ask(tmp_path: Path) -> None:
    async with (
        running_signup(tmp_path, signup_mails_per_hour=3) as service,
        service.other_browser("127.0.0.2") as other,
    ):
        assert (await service.sign_up("a1@example.com")).status == 200
        assert (await service.sign_up("a2@example.com")).status == 200
        assert (await other.sign_up("b1@example.com")).status == 200

        refused = [await other.sign_up("b2@example.com"), await service.sign_up("a3@example.com")]

        assert [response.status for response in refused] == [429, 429]
        assert all(retry_after(response) for response in refused)
        assert await stored(service, "b2@example.com") is None
        assert await stored(service, "a3@example.com") is None
        await service.smtp.wait_for(3)
        await service.smtp.nothing_more_than(3)


async def test_plus_addresses_of_one_mailbox_share_one_cap_across_clients(service: Service) -> None:
    spellings = [f"victim+{n}@example.com" for n in range(4)] + [
        "Vic.Tim@Example.com",
        "v.ictim+6@example.com",
    ]

    answers = []
    for index, address in enumerate(spellings):
        async with service.other_browser(f"127.0.0.{2 + index}") as browser:
            answers.append((await browser.sign_up(address)).status)

    assert answers == [200] * 5 + [429]
    assert await stored(service, "v.ictim+6@example.com") is None
    await service.smtp.wait_for(5)
    await service.smtp.nothing_more_than(5)  # at most five mails an hour reach that inbox
    assert (await service.sign_up("someone.else@example.com")).status == 200  # the mailbox's cap only


# --- a mail that cannot be queued is not promised


class SilentSmtp:
    """A mail server that accepts connections and never says a word (it hangs): the sender waits on its
    first mail, and the rest stay in the outbox."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()
        await reader.read()  # until the client or close() hangs up

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"smtp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        """Hang up: the waiting sender fails at once, and so does every later one (connection refused)."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()


@asynccontextmanager
async def silent_smtp() -> AsyncIterator[SilentSmtp]:
    server = SilentSmtp()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_a_full_outbox_says_the_mail_was_not_sent_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions, "OUTBOX_SIZE", 2)
    async with silent_smtp() as hung, running_signup(tmp_path, smtp_url=hung.url) as service:
        try:
            assert (await service.sign_up("first@example.com")).status == 200
            async with asyncio.timeout(5):
                await hung.connected.wait()  # the sender holds the first mail; the outbox is empty
            for address in ("second@example.com", "third@example.com"):
                assert (await service.sign_up(address)).status == 200
            await service.services.subscribers.subscribe("email", "active@example.com")

            refused = await service.sign_up("fourth@example.com")
            known = await service.sign_up("active@example.com")

            assert refused.status == 503
            retry_after(refused)
            page = await refused.text()
            assert "暂时无法发送确认邮件，请稍后再试" in page
            assert "请查收邮件" not in page
            assert await stored(service, "fourth@example.com") is None
            assert (known.status, await known.text()) == (503, page)
        finally:
            await hung.close()


async def test_once_the_mail_server_is_found_down_sign_ups_are_told_so(tmp_path: Path) -> None:
    async with running_signup(tmp_path, smtp_url=f"smtp://127.0.0.1:{free_port()}") as service:
        # The first one cannot know (its mail leaves in the background, so its timing tells nothing)...
        assert (await service.sign_up("first@example.com")).status == 200
        async with asyncio.timeout(10):
            await service.signup.drain()  # ... and its mail fails: connection refused

        refused = await service.sign_up("second@example.com")

        assert refused.status == 503
        assert retry_after(refused) <= MAILER_DOWN_SECONDS
        assert "暂时无法发送确认邮件" in await refused.text()
        assert await stored(service, "second@example.com") is None


# --- cross-site posts


@pytest.mark.parametrize(
    "forgery", ["no cookie", "no field", "wrong field", "another visitor's field", "json body"]
)
async def test_a_post_without_the_forms_csrf_pair_gets_403_and_stores_nothing(
    service: Service, forgery: str
) -> None:
    await service.browser.open_issue_page()
    field = service.browser.field or ""
    async with service.other_browser("127.0.0.2") as other:
        await other.open_issue_page()
        other_field = other.field or ""
    data: dict[str, str] = {"email": READER, FIELD: field}
    if forgery == "no cookie":
        service.client.session.cookie_jar.clear()
    elif forgery == "no field":
        del data[FIELD]
    elif forgery == "wrong field":
        data[FIELD] = "A" * len(field)
    elif forgery == "another visitor's field":
        data[FIELD] = other_field
    assert other_field != field

    if forgery == "json body":
        response = await service.client.post("/subscribe", json=data)
    else:
        response = await service.client.post("/subscribe", data=data)

    assert response.status == 403
    assert "请刷新页面" in await response.text()
    assert await service.services.subscribers.count() == 0
    await service.smtp.nothing_more_than(0, wait=0.1)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
async def test_a_post_from_another_origin_gets_403_even_with_a_sound_pair(
    service: Service, origin: str
) -> None:
    response = await service.browser.sign_up(READER, headers={"Origin": origin})

    assert response.status == 403
    assert await service.services.subscribers.count() == 0


async def test_a_post_from_our_own_origin_is_taken(service: Service) -> None:
    response = await service.browser.sign_up(READER, headers={"Origin": service.public_url})

    assert response.status == 200
    assert await stored(service, READER) == SubscriberStatus.PENDING


async def test_the_issue_page_sets_a_strict_http_only_cookie_and_keeps_it(service: Service) -> None:
    first = await service.browser.open_issue_page()
    field = service.browser.field

    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("jianbao_csrf=")
    for attribute in ("HttpOnly", "Path=/;", "SameSite=Strict"):
        assert attribute in cookie + ";"
    assert "Secure" not in cookie  # PUBLIC_URL is http here
    assert first.headers["Cache-Control"] == "private"
    await service.browser.open_issue_page()
    assert service.browser.field == field  # the same pair in every tab


async def test_over_https_the_cookie_is_secure_and_host_only(tmp_path: Path) -> None:
    async with running_signup(tmp_path, public_url="https://jb.example") as service:
        page = await service.client.get(ISSUE_PAGE)

        cookie = page.headers["Set-Cookie"]
        assert cookie.startswith("__Host-jianbao_csrf=")
        for attribute in ("HttpOnly", "Path=/;", "SameSite=Strict", "Secure"):
            assert attribute in cookie + ";"
        assert "Domain" not in cookie


# --- sign-ups never confirmed go


async def test_the_app_purges_expired_unconfirmed_sign_ups_when_it_starts(tmp_path: Path) -> None:
    nine_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=9)
    async with Database(sqlite_url(tmp_path / "subscriptions.db")) as database:
        await database.migrate()
        old = SubscriberStore(database, clock=lambda: nine_days_ago)
        await old.subscribe("email", "stale@example.com", confirmed=False)
        await old.subscribe("email", "active@example.com")
        await old.subscribe("email", "left@example.com")
        await old.unsubscribe("email", "left@example.com")
        await SubscriberStore(database).subscribe("email", "fresh@example.com", confirmed=False)

    async with running_signup(tmp_path) as service:
        assert await stored(service, "stale@example.com") is None
        assert await stored(service, "fresh@example.com") == SubscriberStatus.PENDING
        assert await stored(service, "active@example.com") == SubscriberStatus.ACTIVE
        assert await stored(service, "left@example.com") == SubscriberStatus.UNSUBSCRIBED


# --- logs


async def test_logs_hold_neither_addresses_nor_tokens(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = await confirm_path(service)
    await service.client.get(path)
    await service.client.post(path)
    for n in range(11):  # through the cap, whose refusal is logged too
        await service.sign_up(f"reader+{n}@example.com")
    token = path.rsplit("/", 1)[1]

    ours = [
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("bot", "storage", "channels")
    ]
    assert any("confirmed" in message for message in ours)
    for message in ours:
        assert token not in message
        assert "@example.com" not in message.lower()
        assert "127.0.0.1" not in message


# --- bodies that cannot be read (found by scripts/fuzz_routes.py)


@pytest.mark.parametrize(
    ("content_type", "extra_headers", "body"),
    [
        ("application/x-www-form-urlencoded; charset=W", {}, b"email=a%40example.com"),
        ("multipart/form-data; boundary=x", {"Content-Encoding": "gzip"}, b"not gzip at all"),
    ],
    ids=["unknown-charset", "broken-gzip"],
)
async def test_a_form_that_cannot_be_read_is_a_400_and_stores_nothing(
    service: Service, content_type: str, extra_headers: dict[str, str], body: bytes
) -> None:
    await service.browser.open_issue_page()
    response = await service.client.post(
        "/subscribe", data=body, headers={"Content-Type": content_type, **extra_headers}
    )
    assert response.status == 400
    assert "Traceback" not in await response.text()
    assert await service.services.subscribers.count() == 0
