"""Email sign-up over HTTP as a reader's browser and their mail provider do it, with a real SMTP server.

POST /subscribe -> a real mail arrives at aiosmtpd -> its confirmation link -> the page's button -> ACTIVE
-> the RFC 8058 one-click POST -> UNSUBSCRIBED; and every way in which a client may send something wrong
or hostile. Scanners, caps, CSRF and purging are in test_signup_abuse.py.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.click_buffer import CLICKS
from bot.csrf import FIELD
from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.subscriptions import SIGNUP
from bot.tokens import Purpose, SubscriberTokens
from channels.email.mailer import Mailer, MailRefused, SmtpServer
from channels.email.render import EmailTemplate
from channels.links import tracking_token
from content.errors import BadInput, Unavailable
from content.parser import parse_issue
from content.source import decode_issue
from storage.subscribers import SubscriberStatus
from tests.bot.helpers import minimal_issue, sqlite_url
from tests.bot.signup_helpers import CONFIRM_LINK, DAY, READER, SECRET_KEY, Service, running_signup
from tests.fakes.smtp import free_port, running_fake_smtp

ARTICLE = "https://arxiv.org/abs/2106.08295"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_signup(tmp_path) as service:
        yield service


def one_line(text: str) -> bool:
    return text.count("\n") <= 1 and "Traceback" not in text


# --- the whole way


async def test_sign_up_confirm_and_one_click_unsubscribe(service: Service) -> None:
    signed_up = await service.sign_up(READER, topics="量化, NPU")
    assert signed_up.status == 200
    assert "请查收邮件" in await signed_up.text()

    (mail,) = await service.smtp.wait_for(1)
    assert mail.recipients == (READER,)
    assert mail.message["To"] == READER
    assert mail.message["From"].addresses[0].addr_spec == "newsletter@jianbao.example"
    assert "确认" in mail.message["Subject"]
    assert mail.message["Message-ID"].endswith("@jianbao.example>")
    pending = await service.subscriber()
    assert (pending.status, pending.topics) == (SubscriberStatus.PENDING, ("量化", "NPU"))

    links = CONFIRM_LINK.findall(mail.text)
    assert len(links) == 1
    assert links[0].startswith(service.public_url)
    confirm_path = links[0].removeprefix(service.public_url)
    button_page = await service.client.get(confirm_path)
    assert button_page.status == 200
    assert f'<form method="post" action="{confirm_path}">' in await button_page.text()
    confirmed = await service.client.post(confirm_path)
    assert confirmed.status == 200
    page = await confirmed.text()
    assert "订阅成功" in page
    assert READER not in page  # the page shows a masked address
    active = await service.subscriber()
    assert active.status == SubscriberStatus.ACTIVE

    # What a mail provider does with List-Unsubscribe-Post: a POST with no cookie, no login.
    # The confirmation page offers the way out too. Its token is read off the page, not remade here:
    # a token carries the second it was made, and a slow run crosses a second between the two.
    (unsubscribe_path,) = re.findall(
        r'href="' + re.escape(service.public_url) + r'(/unsubscribe/[\w-]+)"', page
    )
    token = unsubscribe_path.removeprefix("/unsubscribe/")
    made_for = await SubscriberTokens(SECRET_KEY).verify(
        Purpose.UNSUBSCRIBE, token, dt.datetime.now(dt.UTC), service.services.subscribers.get_by_id
    )
    assert made_for.id == active.id
    left = await service.client.post(
        unsubscribe_path,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert left.status == 200
    assert "Location" not in left.headers
    assert one_line(await left.text())
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED

    # Idempotent, and an empty body works as well.
    again = await service.client.post(unsubscribe_path, allow_redirects=False)
    assert again.status == 200
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED
    await service.smtp.nothing_more_than(1)


async def test_the_unsubscribe_page_changes_nothing_until_its_button_is_pressed(service: Service) -> None:
    subscriber, _ = await service.services.subscribers.subscribe("email", READER)
    path = f"/unsubscribe/{service.token(Purpose.UNSUBSCRIBE, subscriber)}"

    page = await service.client.get(path)

    assert page.status == 200
    html = await page.text()
    assert f'<form method="post" action="{path}">' in html
    assert (await service.subscriber()).status == SubscriberStatus.ACTIVE
    button = await service.client.post(path, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False)
    assert button.status == 200
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED
    assert "已经退订" in await (await service.client.get(path)).text()


async def test_the_sign_up_answer_does_not_tell_who_is_subscribed(service: Service) -> None:
    await service.services.subscribers.subscribe("email", "active@example.com")

    new = await service.sign_up("new@example.com")
    known = await service.sign_up("ACTIVE@example.com")

    assert (new.status, known.status) == (200, 200)
    assert await new.text() == await known.text()
    (mail,) = await service.smtp.wait_for(1)
    assert mail.recipients == ("new@example.com",)
    await service.smtp.nothing_more_than(1)  # the active address got nothing new


async def test_a_repeated_sign_up_sends_one_mail_until_it_is_confirmed(service: Service) -> None:
    for _ in range(3):
        assert (await service.sign_up(READER)).status == 200
    (mail,) = await service.smtp.wait_for(1)
    await service.smtp.nothing_more_than(1)

    # Confirmed, gone, back: a returning reader confirms again, and gets the mail to do it at once.
    await service.client.post(CONFIRM_LINK.findall(mail.text)[0].removeprefix(service.public_url))
    await service.services.subscribers.unsubscribe("email", READER)
    assert (await service.sign_up(READER.lower())).status == 200
    second = (await service.smtp.wait_for(2))[1]
    assert second.recipients == (READER,)  # the spelling first given
    assert (await service.subscriber()).status == SubscriberStatus.PENDING


async def test_a_refused_recipient_gets_the_same_page_and_can_ask_again(service: Service) -> None:
    service.smtp.refuse(READER)

    refused = await service.sign_up(READER)

    assert refused.status == 200
    assert "请查收邮件" in await refused.text()
    await service.smtp.nothing_more_than(0)
    service.smtp.handler.refused.clear()
    await service.sign_up(READER)  # no waiting out the interval: the first mail never left
    assert (await service.smtp.wait_for(1))[0].recipients == (READER,)


# --- confirmation links


async def test_an_expired_confirmation_link_is_refused(service: Service) -> None:
    pending, _ = await service.services.subscribers.subscribe("email", READER, confirmed=False)
    eight_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    path = f"/confirm/{service.token(Purpose.CONFIRM, pending, eight_days_ago)}"

    for response in (await service.client.get(path), await service.client.post(path)):
        assert response.status == 400
        assert "expired" in await response.text()
    assert (await service.subscriber()).status == SubscriberStatus.PENDING


@pytest.mark.parametrize("kind", ["forged", "unsubscribe token", "garbled", "truncated"])
async def test_a_bad_confirmation_link_is_refused(service: Service, kind: str) -> None:
    pending, _ = await service.services.subscribers.subscribe("email", READER, confirmed=False)
    now = dt.datetime.now(dt.UTC)
    token = {
        "forged": SubscriberTokens("not our key").make(Purpose.CONFIRM, pending, now),
        "unsubscribe token": service.token(Purpose.UNSUBSCRIBE, pending),
        "garbled": "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "truncated": service.token(Purpose.CONFIRM, pending)[:-3],
    }[kind]

    for response in (
        await service.client.get(f"/confirm/{token}"),
        await service.client.post(f"/confirm/{token}"),
    ):
        assert response.status == 400
        assert "<script>" not in await response.text()
    assert (await service.subscriber()).status == SubscriberStatus.PENDING


async def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(service: Service) -> None:
    pending, _ = await service.services.subscribers.subscribe("email", READER, confirmed=False)
    token = service.token(Purpose.CONFIRM, pending)
    await service.services.subscribers.unsubscribe("email", READER)

    page = await service.client.get(f"/confirm/{token}")
    response = await service.client.post(f"/confirm/{token}")

    assert (page.status, response.status) == (400, 400)
    assert '<form method="post"' not in await page.text()  # no button to press (the search box is a GET)
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED


# --- unsubscribe links


async def test_a_forged_unsubscribe_token_is_refused_with_one_line(service: Service) -> None:
    subscriber, _ = await service.services.subscribers.subscribe("email", READER)
    forged = SubscriberTokens("not our key").make(Purpose.UNSUBSCRIBE, subscriber, dt.datetime.now(dt.UTC))

    for token in (forged, "x" * 39, service.token(Purpose.CONFIRM, subscriber)):
        response = await service.client.post(f"/unsubscribe/{token}", allow_redirects=False)
        assert response.status == 400
        assert one_line(await response.text())
        assert (await service.client.get(f"/unsubscribe/{token}")).status == 400
    assert (await service.subscriber()).status == SubscriberStatus.ACTIVE


async def test_one_subscribers_token_never_unsubscribes_another(service: Service) -> None:
    alice, _ = await service.services.subscribers.subscribe("email", "alice@example.com")
    await service.services.subscribers.subscribe("email", "bob@example.com")

    response = await service.client.post(f"/unsubscribe/{service.token(Purpose.UNSUBSCRIBE, alice)}")

    assert response.status == 200
    assert (await service.subscriber("alice@example.com")).status == SubscriberStatus.UNSUBSCRIBED
    assert (await service.subscriber("bob@example.com")).status == SubscriberStatus.ACTIVE


async def test_the_unsubscribe_url_for_newsletter_mail_works(service: Service) -> None:
    subscriber, _ = await service.services.subscribers.subscribe("email", READER)
    url = service.client.app[SIGNUP].unsubscribe_url(subscriber, dt.datetime.now(dt.UTC))

    assert url.startswith(f"{service.public_url}/unsubscribe/")
    assert (await service.client.post(url.removeprefix(service.public_url))).status == 200
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED


async def test_a_newsletter_mail_unsubscribes_with_its_list_unsubscribe_header(service: Service) -> None:
    subscriber, _ = await service.services.subscribers.subscribe("email", READER)
    issue = parse_issue(decode_issue(minimal_issue(DAY.isoformat()).encode()))
    signup = service.client.app[SIGNUP]
    template = service.services.renderer.render(issue, "email").payload
    assert isinstance(template, EmailTemplate)
    message = template.personalize(
        to=subscriber.address, unsubscribe_url=signup.unsubscribe_url(subscriber, dt.datetime.now(dt.UTC))
    )
    assert signup.mailer is not None
    await signup.mailer.send(message)

    (mail,) = await service.smtp.wait_for(1)
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_target = re.search(r"<(http[^>]+)>", str(mail.message["List-Unsubscribe"]))
    assert https_target is not None
    # What Gmail does when the reader presses "Unsubscribe": POST the body RFC 8058 prescribes.
    response = await service.client.post(
        https_target.group(1).removeprefix(service.public_url),
        data={"List-Unsubscribe": "One-Click"},
        allow_redirects=False,
    )
    assert response.status == 200
    assert (await service.subscriber()).status == SubscriberStatus.UNSUBSCRIBED


# --- hostile sign-ups


@pytest.mark.parametrize(
    "email",
    [
        "a@b.c\nBcc: victim@example.com",
        "reader@example.com\r\nBcc: victim@example.com",
        "reader@example.com, victim@example.com",
        "Reader <reader@example.com>",
        "not-an-address",
        "reader@@example.com",
        "x" * 250 + "@example.com",
        "",
    ],
)
async def test_a_bad_address_gets_400_and_no_mail(service: Service, email: str) -> None:
    response = await service.sign_up(email)

    assert response.status == 400
    assert one_line(await response.text())
    assert await service.services.subscribers.count() == 0
    await service.smtp.nothing_more_than(0, wait=0.1)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"address": READER}, id="no email field"),
        pytest.param({"email": READER, "topics": "x" * 40}, id="over-long topic"),
        pytest.param({"email": READER, "topics": " ".join(f"t{n}" for n in range(30))}, id="many topics"),
    ],
)
async def test_a_malformed_form_gets_400(service: Service, fields: dict[str, str]) -> None:
    await service.browser.open_issue_page()  # a sound CSRF pair: what is refused is the form itself
    assert service.browser.field is not None

    response = await service.client.post("/subscribe", data={FIELD: service.browser.field, **fields})

    assert response.status == 400
    assert one_line(await response.text())
    assert await service.services.subscribers.count() == 0


async def test_an_uploaded_file_is_not_an_address(service: Service) -> None:
    await service.browser.open_issue_page()
    form = FormData()
    form.add_field(FIELD, service.browser.field or "")
    form.add_field("email", b"reader@example.com", filename="email.txt", content_type="text/plain")

    response = await service.client.post("/subscribe", data=form)

    assert response.status == 400
    assert await service.services.subscribers.count() == 0


async def test_a_2mb_body_is_refused_with_413(service: Service) -> None:
    body = io.BytesIO(b"email=reader%40example.com&topics=" + b"x" * (2 * 1024 * 1024))

    response = await service.client.post(
        "/subscribe", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert response.status == 413
    assert one_line(await response.text())
    assert await service.services.subscribers.count() == 0


async def test_sign_up_without_smtp_is_not_offered_but_unsubscribing_still_works(tmp_path: Path) -> None:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "no-mail.db"),
        public_url="https://jb.example",
        secret_key=SECRET_KEY,
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        assert (await client.post("/subscribe", data={"email": READER})).status == 404
        services: Services = client.app[SERVICES]
        subscriber, _ = await services.subscribers.subscribe("email", READER)
        token = SubscriberTokens(SECRET_KEY).make(Purpose.UNSUBSCRIBE, subscriber, dt.datetime.now(dt.UTC))
        assert (await client.post(f"/unsubscribe/{token}")).status == 200


# --- click tracking


async def remember(service: Service, url: str = ARTICLE, channel: str = "telegram") -> str:
    token = tracking_token(SECRET_KEY.encode(), channel, DAY, url)
    await service.services.links.remember(channel, DAY, [(token, url)])
    return token


async def clicks_metric(service: Service, channel: str) -> float:
    exposition = await (await service.client.get("/metrics")).text()
    found = re.search(rf'^jianbao_link_clicks_total\{{channel="{channel}"\}} (\S+)$', exposition, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_tracked_link_redirects_to_its_url_and_counts_the_click(service: Service) -> None:
    token = await remember(service)

    response = await service.client.get(f"/r/{token}", allow_redirects=False, headers={"User-Agent": "A"})
    await service.client.get(f"/r/{token}", allow_redirects=False, headers={"User-Agent": "B"})
    await service.client.app[CLICKS].flush()  # clicks are recorded in batches (bot/click_buffer.py)

    assert response.status == 302
    assert response.headers["Location"] == ARTICLE
    assert await service.services.links.clicks(token) == 2
    assert await clicks_metric(service, "telegram") == 2.0


async def test_the_tracking_links_of_a_rendered_issue_redirect_to_their_urls(service: Service) -> None:
    issue = parse_issue(decode_issue(minimal_issue(DAY.isoformat()).encode()))
    document = service.services.renderer.document(issue, "email")
    tracked = [link for link in document.links if link.token]
    assert len(tracked) == 2

    await service.services.links.remember(
        "email", issue.date, [(link.token or "", link.original) for link in tracked]
    )

    for link in tracked:
        assert link.rendered.startswith(f"{service.public_url}/r/")
        response = await service.client.get(
            link.rendered.removeprefix(service.public_url), allow_redirects=False
        )
        assert (response.status, response.headers["Location"]) == (302, link.original)
    assert await clicks_metric(service, "email") == 2.0


async def test_without_a_secret_key_tracking_and_tokens_share_one_random_key(tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path / "random-key.db"), public_url="https://jb.example")
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        services: Services = client.app[SERVICES]
        key = services.settings.secret_key
        assert len(key) >= 32
        assert services.renderer.policy("email").secret == key.encode()
        subscriber, _ = await services.subscribers.subscribe("email", READER)
        token = SubscriberTokens(key).make(Purpose.UNSUBSCRIBE, subscriber, dt.datetime.now(dt.UTC))
        assert (await client.post(f"/unsubscribe/{token}")).status == 200
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        assert client.app[SERVICES].settings.secret_key != key


async def test_head_follows_a_link_without_counting_it(service: Service) -> None:
    token = await remember(service)

    response = await service.client.head(f"/r/{token}", allow_redirects=False)
    await service.client.app[CLICKS].flush()

    assert response.status == 302
    assert response.headers["Location"] == ARTICLE
    assert await service.services.links.clicks(token) == 0


@pytest.mark.parametrize(
    "token",
    [
        tracking_token(SECRET_KEY.encode(), "telegram", DAY, "https://evil.example/phish"),  # never stored
        tracking_token(b"another key", "telegram", DAY, ARTICLE),
        "aaaaaaaaaaaaaaaa",
        "https%3A%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "A" * 5000,
    ],
)
async def test_r_never_redirects_to_a_url_that_was_not_stored(service: Service, token: str) -> None:
    await remember(service)

    response = await service.client.get(f"/r/{token}", allow_redirects=False)

    assert response.status == 404
    assert "Location" not in response.headers
    assert one_line(await response.text())
    assert await clicks_metric(service, "telegram") == 0.0


async def test_a_non_ascii_url_is_redirected_percent_encoded(service: Service) -> None:
    url = "https://example.com/文章?q=量化"
    token = await remember(service, url)

    response = await service.client.get(f"/r/{token}", allow_redirects=False)

    assert response.headers["Location"] == "https://example.com/%E6%96%87%E7%AB%A0?q=%E9%87%8F%E5%8C%96"


# --- the mailer on its own


def test_smtp_urls() -> None:
    assert SmtpServer.from_url("smtp://127.0.0.1:2525") == SmtpServer(
        "127.0.0.1", 2525, False, None, None, None
    )
    assert SmtpServer.from_url("smtps://user%40x:p%3Ass@mail.example") == SmtpServer(
        "mail.example", 465, True, False, "user@x", "p:ss"
    )
    # A password is never sent over a connection that did not switch to TLS, except on loopback.
    assert SmtpServer.from_url("smtp://u:p@mail.example:587").start_tls is True
    assert SmtpServer.from_url("smtp://u:p@localhost:1025").start_tls is None
    for bad in ("", "mail.example:25", "http://mail.example", "smtp://:25", "smtp://mail.example:99999"):
        with pytest.raises(BadInput) as error:
            SmtpServer.from_url(bad)
        assert "99999" not in error.value.message


async def test_the_mailer_reports_refusals_and_unreachable_servers() -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "gone@example.com", "x"
    message["Date"], message["Message-ID"] = "Tue, 01 Dec 2026 08:00:00 +0000", "<1@example.com>"
    message.set_content("x")

    with running_fake_smtp() as fake_smtp:
        fake_smtp.refuse("gone@example.com")
        with pytest.raises(MailRefused) as refused:
            await Mailer(fake_smtp.url).send(message)
    assert "gone@example.com" not in refused.value.message
    with pytest.raises(Unavailable):
        await Mailer(f"smtp://127.0.0.1:{free_port()}", timeout=2).send(message)
