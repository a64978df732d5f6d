"""Per-reader clicks in email (channels/email/render.py): a tracked link carries `?s=` only where the link
policy asks for it, each mail gets its reader's id in every tracked link without a second render, a mail
without one carries no marker, and the HTML budget still bounds the personalised HTML."""

from __future__ import annotations

import pytest

from bot.tokens import ReaderIds
from channels.document import IssueDocument, build_document, summary_parser
from channels.email.render import MAX_READER_ID_CHARS, render_email
from channels.links import LinkPolicy, LinkRewriter
from content.parser import parse_issue
from content.source import read_issue_file
from tests.channels.test_email import FILES, LONG_ADDRESS, LONG_UNSUBSCRIBE_URL, SENDER

UNSUBSCRIBE = "https://jianbao.example/unsubscribe/TOKEN"
PER_READER = LinkPolicy(
    "email", public_url="https://jianbao.example", tracking=True, secret=b"test-secret", readers=True
)
PER_LINK = LinkPolicy("email", public_url="https://jianbao.example", tracking=True, secret=b"test-secret")


def test_each_reader_gets_their_id_in_every_tracked_link() -> None:
    template = render_email(_document(PER_READER), mail_from=SENDER)
    tracked = [link.rendered for link in template.links if link.token]
    assert tracked
    reader = ReaderIds("a-key").make(42)

    message = template.personalize(to="a@example.com", unsubscribe_url=UNSUBSCRIBE, reader=reader)
    anonymous = template.personalize(to="a@example.com", unsubscribe_url=UNSUBSCRIBE)

    raw = message.as_string()
    html = str(message.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]
    assert all(f'href="{url}?s={reader}"' in html for url in tracked)
    assert f"?s={reader}" in str(message.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    assert "JIANBAO-READER" not in raw
    assert "?s=" not in anonymous.as_string()
    assert "JIANBAO-READER" not in anonymous.as_string()
    assert "?s=" not in template.preview()
    with pytest.raises(ValueError, match="reader id"):
        template.personalize(to="a@example.com", unsubscribe_url=UNSUBSCRIBE, reader="a&b")


def test_without_per_reader_links_nothing_changes() -> None:
    template = render_email(_document(PER_LINK), mail_from=SENDER)
    assert template.reader_marker == ""
    message = template.personalize(to="a@example.com", unsubscribe_url=UNSUBSCRIBE, reader="AAAAe39T2l7FD4ef")
    assert "?s=" not in message.as_string()


@pytest.mark.parametrize("path", [file.stem for file in FILES[:8]])
def test_the_html_budget_bounds_the_personalised_html(path: str) -> None:
    template = render_email(_document(PER_READER, path), mail_from=SENDER)
    assert template.reader_marker
    longest = "A" * MAX_READER_ID_CHARS
    message = template.personalize(to=LONG_ADDRESS, unsubscribe_url=LONG_UNSUBSCRIBE_URL, reader=longest)
    html = str(message.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]
    assert len(html.encode()) <= template.html_worst_bytes <= template.html_max_bytes
    # The marker is longer than an id: the budget counts what the id saves, not the marker's bytes.
    plain = render_email(_document(PER_LINK, path), mail_from=SENDER)
    marked = template.html.count(template.reader_marker)
    assert marked > 0
    assert template.html_worst_bytes - plain.html_worst_bytes == marked * (len("?s=") + MAX_READER_ID_CHARS)


def _document(policy: LinkPolicy, path: str = "") -> IssueDocument:
    source = next(file for file in FILES if file.stem == path) if path else FILES[0]
    issue = parse_issue(read_issue_file(source))
    return build_document(issue, LinkRewriter(policy, issue.date), summary_parser())
