"""The preference link in the mail footer (channels/email/render.py): beside the unsubscribe link, styled
like it, in the HTML and the text part, only when the delivery has a preference URL; the HTML budget holds
with both URLs at their longest; a bad URL is refused like a bad unsubscribe URL; and the email channel
sends it from a Delivery to a real (fake) SMTP server."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from channels.base import PushStatus
from channels.channel import Delivery, Rendered
from channels.email.channel import EMAIL
from channels.email.mailer import SmtpPool
from channels.email.render import (
    EMAIL_HTML_MAX_BYTES,
    MAX_UNSUBSCRIBE_URL_CHARS,
    SAMPLE_PREFERENCES_URL,
    EmailTemplate,
    render_email,
)
from channels.email.settings import EmailSettings
from tests.channels.test_email import SENDER, UNTRACKED, corpus_file, issue_document
from tests.fakes.pace import RecordingPace
from tests.fakes.smtp import running_fake_smtp

UNSUBSCRIBE = "https://jianbao.example/unsubscribe/TOKEN-OF-ANN"
PREFERENCES = "https://jianbao.example/preferences/TOKEN-OF-ANN?a=1&b=2"
ISSUE = "https://jianbao.example/issues/2020-07-02"
LINK_STYLE = 'style="color:#57606a;text-decoration:underline"'
WHEN = dt.datetime(2020, 7, 2, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def template() -> EmailTemplate:
    return render_email(issue_document(corpus_file("2020-07-02"), UNTRACKED), mail_from=SENDER)


def _parts(template: EmailTemplate, preferences_url: str | None) -> tuple[str, str]:
    message = template.personalize(
        to="ann@example.com", unsubscribe_url=UNSUBSCRIBE, date=WHEN, preferences_url=preferences_url
    )
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None
    assert text is not None
    return str(html.get_content()), str(text.get_content())


def _footer(html: str) -> str:
    (found,) = re.findall(r'<p style="margin:0 0 6px"><a href="https://jianbao\.example/unsub.*?</p>', html)
    return str(found)


def test_the_footer_links_the_preference_page_in_both_parts(template: EmailTemplate) -> None:
    html, text = _parts(template, PREFERENCES)

    assert _footer(html) == (
        f'<p style="margin:0 0 6px"><a href="{UNSUBSCRIBE}" {LINK_STYLE}>退订</a>'
        f' · <a href="https://jianbao.example/preferences/TOKEN-OF-ANN?a=1&amp;b=2" {LINK_STYLE}>管理订阅/选择话题</a>'
        f' · <a href="{ISSUE}" {LINK_STYLE}>在网页上阅读</a></p>'
    )
    assert text.endswith(
        "-- \n"
        "你收到这封邮件，是因为 ann@example.com 订阅了嵌入式AI简报。\n"
        f"退订：{UNSUBSCRIBE}\n"
        f"管理订阅/选择话题：{PREFERENCES}\n"
        f"在网页上阅读：{ISSUE}\n"
    )


def test_without_a_preference_url_the_footer_is_as_it_was(template: EmailTemplate) -> None:
    html, text = _parts(template, None)

    assert _footer(html) == (
        f'<p style="margin:0 0 6px"><a href="{UNSUBSCRIBE}" {LINK_STYLE}>退订</a>'
        f' · <a href="{ISSUE}" {LINK_STYLE}>在网页上阅读</a></p>'
    )
    assert text.endswith(f"订阅了嵌入式AI简报。\n退订：{UNSUBSCRIBE}\n在网页上阅读：{ISSUE}\n")
    assert "管理订阅" not in html + text
    assert "JIANBAO-PREFERENCES" not in html + text


def test_the_sample_shows_the_sample_preference_link(template: EmailTemplate) -> None:
    payload = template.to_dict()

    assert f"管理订阅/选择话题：{SAMPLE_PREFERENCES_URL}\n" in str(payload["text"])
    assert f'<a href="{SAMPLE_PREFERENCES_URL}" {LINK_STYLE}>管理订阅/选择话题</a>' in str(payload["html"])
    assert f"管理订阅/选择话题：{SAMPLE_PREFERENCES_URL}\n" in template.preview()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://jianbao.example/preferences/x\r\nBcc: victim@example.com", "contains a line break"),
        ("javascript:alert(1)", "must be an absolute http(s) URL"),
        ('https://jianbao.example/p/"><script>', "must be ASCII, unquoted and short"),
        ("https://jianbao.example/p/" + "a" * MAX_UNSUBSCRIBE_URL_CHARS, "must be ASCII, unquoted and short"),
    ],
)
def test_a_bad_preference_url_is_refused(template: EmailTemplate, url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"the preferences URL {problem}")):
        template.personalize(to="ann@example.com", unsubscribe_url=UNSUBSCRIBE, preferences_url=url)


def test_the_html_budget_holds_with_both_urls_at_their_longest() -> None:
    longest = "https://jianbao.example/u/" + "&" * (MAX_UNSUBSCRIBE_URL_CHARS - 26)  # &amp; in HTML
    for date in ("2020-07-02", "2021-08-01"):
        template = render_email(issue_document(corpus_file(date)), mail_from=SENDER)
        message = template.personalize(
            to="ann@example.com", unsubscribe_url=longest, preferences_url=longest.replace("/u/", "/p/")
        )
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        assert len(str(html.get_content()).encode()) <= template.html_worst_bytes <= EMAIL_HTML_MAX_BYTES
        # The budget reserves the escaped worst case for each of the two URLs, not one.
        assert template.html_reserve >= 2 * (len(longest) * 6 - 60)


async def test_the_email_channel_sends_a_deliverys_preference_link() -> None:
    rendered: Rendered = EMAIL.render(
        issue_document(corpus_file("2020-07-02"), UNTRACKED), EmailSettings(mail_from=SENDER)
    )
    delivery = Delivery(
        id=1,
        broadcast_id=1,
        issue_date=dt.date(2020, 7, 2),
        address="ann@example.com",
        unsubscribe_url=UNSUBSCRIBE,
        preferences_url=PREFERENCES,
    )
    with running_fake_smtp() as smtp:
        pool = SmtpPool(smtp.url, size=1, timeout=10)
        try:
            outcome = await EMAIL.deliver(pool, rendered, delivery, RecordingPace())
        finally:
            await pool.close()
        (mail,) = await smtp.wait_for(1)

    assert outcome.pushed.status == PushStatus.SENT
    assert f"管理订阅/选择话题：{PREFERENCES}\n" in mail.text
