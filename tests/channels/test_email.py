"""The email channel: MIME structure and headers, the HTML budget, section-aware truncation, goldens,
hostile content, cheap personalisation, and a screenshot of the HTML part in headless Chromium."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.message
import email.policy
import json
import re
import struct
import subprocess
import sys
import zlib
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import channels.email.render as email_channel
from channels.document import IssueDocument, build_document, summary_parser
from channels.email.render import (
    EMAIL_HTML_MAX_BYTES,
    MAX_ADDRESS_CHARS,
    MAX_UNSUBSCRIBE_URL_CHARS,
    PREHEADER_MAX_CHARS,
    SAMPLE_UNSUBSCRIBE_URL,
    SUBJECT_MAX_CHARS,
    EmailTemplate,
    render_email,
)
from channels.fitting import DoesNotFit, more_line, non_empty
from channels.links import LinkPolicy, LinkRewriter
from content.demo import demo_issue_dir
from content.model import Issue, Item, QuickNews, Section
from content.parser import parse_issue
from content.source import read_issue_file

FILES = sorted(demo_issue_dir().glob("*.md"))
GOLDEN_DIR = Path(__file__).parent / "golden"
MD = summary_parser()
SENDER = "嵌入式AI简报 <jianbao@jianbao.example>"
MAILTO = "unsubscribe@jianbao.example"
SEND_TIME = dt.datetime(2020, 7, 2, 8, 30, tzinfo=dt.UTC)
TRACKED = LinkPolicy("email", public_url="https://jianbao.example", tracking=True, secret=b"test-secret")
UNTRACKED = LinkPolicy("email", public_url="https://jianbao.example", tracking=False)
NO_PUBLIC_URL = LinkPolicy("email")
# A worst case for the HTML size of one subscriber: the longest URL we accept, every "&" growing to "&amp;".
LONG_UNSUBSCRIBE_URL = "https://jianbao.example/u/" + "a&" * ((MAX_UNSUBSCRIBE_URL_CHARS - 26) // 2)
LONG_ADDRESS = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * (MAX_ADDRESS_CHARS - 197) + ".com"
HREF_SCHEMES = ("https://", "http://", "mailto:")
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
ALLOWED_ELEMENTS = frozenset(
    {"html", "head", "meta", "title", "style", "body", "div", "table", "tbody", "tr", "td", "h1", "h2"}
    | {"p", "span", "a", "br", "ul", "li"}
)


def issue_document(path: Path, policy: LinkPolicy = TRACKED) -> IssueDocument:
    issue = parse_issue(read_issue_file(path))
    return build_document(issue, LinkRewriter(policy, issue.date), MD)


def corpus_file(date: str) -> Path:
    return next(path for path in FILES if path.stem == date)


def parse_message(message: email.message.EmailMessage) -> email.message.EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(message.as_bytes())
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


# --- the validator -------------------------------------------------------------------------------------


@dataclasses.dataclass
class ShownSection:
    name: str
    titles: list[str] = dataclasses.field(default_factory=list)
    more: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)  # (text, href)


class EmailHtml(HTMLParser):
    """Reads the HTML part back: nesting, links, styles, and what each section shows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.hrefs: list[str] = []
        self.styles: list[str] = []  # contents of <style> elements
        self.sections: list[ShownSection] = []
        self.preheader = ""
        self._capture: str | None = None  # what the current text belongs to
        self._text = ""
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag not in ALLOWED_ELEMENTS:
            self.errors.append(f"unexpected element <{tag}>")
        if any(name.startswith("on") for name in attributes):
            self.errors.append(f"event handler on <{tag}>")
        if "body" in self.stack and classes and not attributes.get("style"):
            self.errors.append(f"<{tag} class={classes}> has no inline style: CSS not inlined")
        if tag == "style" and self.stack[-1:] != ["head"]:
            self.errors.append("<style> outside <head>")
        if tag == "a":
            href = attributes.get("href")
            if not href or not href.startswith(HREF_SCHEMES):
                self.errors.append(f"bad href {href!r}")
            self.hrefs.append(href or "")
            self._href = href
        if "section-title" in classes:
            self._start("section")
        elif "item-title" in classes or "item-title-plain" in classes:
            self._start("title")
        elif "more" in classes:
            self._start("more")
        elif "preheader" in classes:
            self._start("preheader")
            if "display:none" not in (attributes.get("style") or "").replace(" ", ""):
                self.errors.append("the preheader is not hidden")
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if self._capture and tag in ("h2", "a", "span", "p", "div"):
            self._finish(tag)

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "style":
            self.styles.append(data)
        if self._capture:
            self._text += data

    def _start(self, kind: str) -> None:
        self._capture, self._text = kind, ""

    def _finish(self, tag: str) -> None:
        kind, text = self._capture, self._text
        if kind == "section" and tag == "h2":
            self.sections.append(ShownSection(text))
        elif kind == "title" and tag in ("a", "span"):
            self.sections[-1].titles.append(text)
        elif kind == "more" and tag == "p":
            self.sections[-1].more.append((text, self._href))
        elif kind == "preheader" and tag == "div":
            self.preheader = text
        else:
            return
        self._capture, self._href = None, None


def read_html(html: str) -> EmailHtml:
    reader = EmailHtml()
    reader.feed(html)
    reader.close()
    if reader.stack:
        reader.errors.append(f"unclosed {reader.stack}")
    return reader


def text_sections(text: str) -> dict[str, str]:
    """The plain-text part's sections: 【name】 -> the text up to the next heading or the footer."""
    body = text.split("\n-- \n")[0]
    pieces = re.split(r"^【(.+)】$", body, flags=re.MULTILINE)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def validate_email(
    template: EmailTemplate,
    original: IssueDocument,
    *,
    to: str = "reader@example.com",
    unsubscribe_url: str = "https://jianbao.example/unsubscribe/TOKEN-1",
    budget: int = EMAIL_HTML_MAX_BYTES,
) -> None:
    """Every rule of the email channel, checked on one rendered issue and one personalised message."""
    message = parse_message(template.personalize(to=to, unsubscribe_url=unsubscribe_url, date=SEND_TIME))
    address = email.utils.parseaddr(to)[1]
    # MIME: multipart/alternative, text/plain first, both UTF-8, nothing else.
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    text, html = (str(part.get_content()) for part in parts)
    # Headers, each exactly once.
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Unsubscribe"):
        assert len(message.get_all(name) or []) == 1, name
    assert message["Subject"] == template.subject
    assert message["MIME-Version"] == "1.0"
    assert message["Message-ID"] == template.message_id(address)
    assert message["Message-ID"].endswith("@jianbao.example>")
    assert message["Date"].datetime == SEND_TIME
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    targets = re.findall(r"<([^<>]+)>", message["List-Unsubscribe"])
    assert targets[0] == unsubscribe_url
    if template.unsubscribe_mailto:
        assert targets[1:] == [f"mailto:{MAILTO}?subject=unsubscribe"]
    else:
        assert targets[1:] == []
    # The unsubscribe link and the recipient, in both parts.
    assert unsubscribe_url in text
    assert address in text
    assert email_channel.html_lib.escape(unsubscribe_url) in html
    assert "JIANBAO-" not in html + text, "a placeholder was left"
    # Sizes: the HTML budget (Gmail clipping), subject and preheader.
    assert len(html.encode("utf-8")) <= template.html_worst_bytes <= budget
    assert len(template.subject) <= max(SUBJECT_MAX_CHARS, len(f"嵌入式AI简报 {template.date}") + 15)
    assert "\n" not in template.subject
    assert 0 < len(template.preheader) <= PREHEADER_MAX_CHARS
    # The HTML: well formed, only our elements, CSS inlined, links safe.
    reader = read_html(html)
    assert reader.errors == []
    assert reader.preheader == template.preheader
    assert "<style" not in html.split("</head>", 1)[1]
    for style in reader.styles:  # what css-inline keeps: the @media rules only
        assert re.fullmatch(r"\s*(@media[^{]*\{(\s*[^{}]*\{[^{}]*\})*\s*\}\s*)*", style), style
    assert unsubscribe_url in reader.hrefs
    # Sections: every non-empty one, in order, with its shown items and exact "还有 N 条".
    document = template.document
    shown = non_empty(document.sections)
    assert [section.name for section in reader.sections] == [
        *(["热身小新闻"] if document.quick_news else []),
        *(section.name for section in shown),
    ]
    html_sections = reader.sections[1:] if document.quick_news else reader.sections
    plain = text_sections(text)
    originals = {section.name: section for section in original.sections}
    for section, seen in zip(shown, html_sections, strict=True):
        whole = originals[section.name]
        assert section.items, f"{section.name} lost its first item"
        assert section.items[0].url == whole.items[0].url
        assert len(section.items) + section.omitted == len(whole.items)
        assert seen.titles == [item.title for item in section.items]
        expected_more = (
            [(more_line(section.omitted), document.section_url(section) or document.issue_url)]
            if section.omitted
            else []
        )
        assert seen.more == expected_more
        block = plain[section.name]
        assert block.count("还有 ") == (1 if section.omitted else 0)
        if section.omitted:
            assert more_line(section.omitted) in block
        for item in section.items:  # every primary link reachable, in both parts
            assert item.title in block
            if item.url:
                assert item.url in reader.hrefs
                assert item.url in block
    assert len(shown) == len(non_empty(original.sections))
    for news in document.quick_news:
        if news.url:
            assert news.url in reader.hrefs
            assert news.url in text
    if document.issue_url:
        assert document.issue_url in reader.hrefs
        assert document.issue_url in text
    # The links list: exactly the rewritten links that the parts show.
    assert {link.rendered for link in template.links} <= set(reader.hrefs)


# --- every corpus issue --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [TRACKED, NO_PUBLIC_URL], ids=["tracked", "no-public-url"])
@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_every_corpus_issue_is_a_valid_email(path: Path, policy: LinkPolicy) -> None:
    document = issue_document(path, policy)
    template = render_email(document, mail_from=SENDER, unsubscribe_mailto=MAILTO)
    validate_email(template, document)
    validate_email(template, document, to=f"读者 <{LONG_ADDRESS}>", unsubscribe_url=LONG_UNSUBSCRIBE_URL)
    assert len(template.html.encode("utf-8")) < EMAIL_HTML_MAX_BYTES
    assert template.document == document  # nothing trimmed


def test_corpus_issues_fit_whole() -> None:
    """Every real issue is far under the budget: nothing is trimmed (truncation is for outliers)."""
    for path in FILES:
        document = issue_document(path)
        template = render_email(document, mail_from=SENDER)
        assert all(section.omitted == 0 for section in template.document.sections), path.stem
        assert template.html_worst_bytes < EMAIL_HTML_MAX_BYTES * 0.6, path.stem


# --- personalisation -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issue_template() -> EmailTemplate:
    return render_email(
        issue_document(corpus_file("2020-07-02")), mail_from=SENDER, unsubscribe_mailto=MAILTO
    )


def test_message_id_is_stable_per_issue_and_subscriber(issue_template: EmailTemplate) -> None:
    def message_id(to: str, date: dt.datetime = SEND_TIME) -> str:
        return str(
            issue_template.personalize(to=to, unsubscribe_url="https://x.example/u/1", date=date)[
                "Message-ID"
            ]
        )

    first = message_id("alice@example.com")
    assert first == message_id("alice@example.com", SEND_TIME + dt.timedelta(hours=3))
    assert first == message_id("Alice <Alice@Example.com>")
    assert first != message_id("bob@example.com")
    assert re.fullmatch(r"<jianbao\.2020-07-02\.[0-9a-f]{16}@jianbao\.example>", first)
    other_issue = render_email(issue_document(corpus_file("2021-08-01")), mail_from=SENDER)
    assert other_issue.message_id("alice@example.com") != first


def test_personalize_makes_the_same_bytes_for_the_same_subscriber(issue_template: EmailTemplate) -> None:
    def eml(to: str) -> bytes:
        return issue_template.personalize(
            to=to, unsubscribe_url="https://x.example/u/1", date=SEND_TIME
        ).as_bytes()

    assert eml("alice@example.com") == eml("alice@example.com")
    assert eml("alice@example.com") != eml("bob@example.com")


def test_personalize_only_replaces_strings(
    issue_template: EmailTemplate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No rendering per subscriber: the template holds finished strings, and with the renderer, the
    Jinja environment and the CSS inliner all broken, personalising still works."""

    def broken(*args: object, **kwargs: object) -> None:
        raise AssertionError("personalize must not render")

    monkeypatch.setattr(email_channel, "_render", broken)
    monkeypatch.setattr(email_channel, "_environment", broken)
    monkeypatch.setattr(email_channel, "_inliner", broken)
    monkeypatch.setattr(email_channel, "fit", broken)
    assert isinstance(issue_template.html, str)
    assert issue_template.html.count(issue_template.unsubscribe_marker) == 1
    assert issue_template.html.count(issue_template.recipient_marker) == 1
    assert issue_template.text.count(issue_template.unsubscribe_marker) == 1
    assert issue_template.text.count(issue_template.recipient_marker) == 1
    message = issue_template.personalize(to="carol@example.com", unsubscribe_url="https://x.example/u/c")
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "https://x.example/u/c" in html.get_content()
    # Without a date, the Date header is now.
    assert abs(parse_message(message)["Date"].datetime - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


@pytest.mark.parametrize(
    ("to", "unsubscribe_url"),
    [
        ("alice@example.com\r\nBcc: mallory@example.com", "https://x.example/u/1"),
        ("alice@example.com\nBcc: mallory@example.com", "https://x.example/u/1"),
        ("alice@example.com", "https://x.example/u/1\r\nBcc: mallory@example.com"),
        ("alice@example.com", "https://x.example/u/1\rX: y"),
        ("alice@example.com", "https://x.example/u/1\n"),
        ("not an address", "https://x.example/u/1"),
        ("alice@example.com, mallory@example.com", "https://x.example/u/1"),
        ("Alice <alice@example.com>, mallory@example.com", "https://x.example/u/1"),
        ("", "https://x.example/u/1"),
        ("alice@example.com", "javascript:alert(1)"),
        ("alice@example.com", "/relative/u/1"),
        ("alice@example.com", 'https://x.example/u/1">'),
        ("alice@example.com", "https://x.example/u/退订"),
        ("alice@example.com", "https://x.example/u/" + "a" * MAX_UNSUBSCRIBE_URL_CHARS),
    ],
)
def test_header_injection_and_bad_values_are_refused(
    issue_template: EmailTemplate, to: str, unsubscribe_url: str
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        issue_template.personalize(to=to, unsubscribe_url=unsubscribe_url, date=SEND_TIME)


def test_an_apostrophe_address_is_accepted_and_escaped(issue_template: EmailTemplate) -> None:
    message = issue_template.personalize(
        to="O'Brien <o'brien@example.com>", unsubscribe_url="https://x.example/u/1?a=1&b=2", date=SEND_TIME
    )
    validate_email(issue_template, issue_template.document, to="O'Brien <o'brien@example.com>")
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "o&#x27;brien@example.com" in html.get_content()
    assert 'href="https://x.example/u/1?a=1&amp;b=2"' in html.get_content()
    assert parse_message(message)["To"].addresses[0].addr_spec == "o'brien@example.com"


def test_a_naive_date_is_refused(issue_template: EmailTemplate) -> None:
    with pytest.raises(ValueError, match="timezone"):
        issue_template.personalize(
            to="a@example.com", unsubscribe_url="https://x.example/u/1", date=dt.datetime(2020, 7, 2, 8)
        )


@pytest.mark.parametrize("sender", ["jianbao@x.example\r\nBcc: m@x.example", "no address here", ""])
def test_a_bad_sender_is_refused(sender: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        render_email(issue_document(corpus_file("2021-08-01")), mail_from=sender)


def test_list_unsubscribe_without_mailto() -> None:
    template = render_email(issue_document(corpus_file("2021-08-01")), mail_from="jianbao@jianbao.example")
    message = parse_message(template.personalize(to="a@example.com", unsubscribe_url="https://x.example/u/1"))
    assert message["List-Unsubscribe"] == "<https://x.example/u/1>"
    assert message["From"] == "jianbao@jianbao.example"


def test_the_module_does_not_shadow_the_standard_library() -> None:
    assert email_channel.EmailMessage is email.message.EmailMessage
    assert Path(email.__file__).parent.parent == Path(dataclasses.__file__).parent
    assert sys.modules["email"] is email


def test_css_inline_keeps_only_media_rules_in_head(issue_template: EmailTemplate) -> None:
    """The decision: css-inline inlines every rule into style="" and keeps the @media rules (which cannot
    be inlined) in one <style> in <head>; the <style> of the template is gone from the output."""
    head, body = issue_template.html.split("</head>", 1)
    assert head.count("<style>") == 1
    style = head.split("<style>", 1)[1].split("</style>", 1)[0]
    assert style.strip().startswith("@media")
    assert ".item" not in style
    assert "font-family" not in style
    assert "<style" not in body
    assert 'class="item" style="' in body


# --- goldens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("date", ["2020-07-02", "2021-08-01"])
def test_golden_payload(date: str) -> None:
    document = issue_document(corpus_file(date), UNTRACKED)
    payload = render_email(document, mail_from=SENDER, unsubscribe_mailto=MAILTO).to_dict()
    golden = GOLDEN_DIR / f"email-{date}.json"
    assert golden.is_file(), f"missing golden {golden}: write it from to_dict() and read it by hand"
    assert payload == json.loads(golden.read_text(encoding="utf-8"))


def test_sample_payload_and_preview(issue_template: EmailTemplate) -> None:
    payload = issue_template.to_dict()
    assert payload["channel"] == "email"
    assert set(payload) == {"channel", "subject", "preheader", "html", "text", "eml", "links"}
    assert SAMPLE_UNSUBSCRIBE_URL in str(payload["text"])
    assert "Date: Thu, 02 Jul 2020 08:00:00 +0800" in str(payload["eml"])
    assert json.loads(json.dumps(payload)) == payload
    preview = issue_template.preview()
    assert preview.startswith(f"主题：{issue_template.subject}\n预览：{issue_template.preheader}\n")
    assert "【业界新闻】" in preview
    assert SAMPLE_UNSUBSCRIBE_URL in preview


# --- hostile content -----------------------------------------------------------------------------------

LONG_SUMMARY = "很长的摘要😀" * 1700  # 10,200 characters, with surrogate pairs in UTF-16


def hostile_issue() -> Issue:
    item = Item(
        position=1,
        title="<script>alert('x')</script> &amp; \"quotes\" 😀👍🏽",
        url="javascript:alert(1)",
        source='<b>来源</b> & "src"',
        tags=("<i>tag</i>",),
        summary="**粗体** <script>alert(2)</script> [js](javascript:alert(3)) [empty]() &amp; 😀",
    )
    items = (
        item,
        Item(position=2, title="empty link", url="", summary="[好链接](https://example.com/a?b=1&c=%22x%22)"),
        *(
            Item(
                position=n, title=f"long {n} 😀", url=f"https://example.com/{n}?a=1&b=2", summary=LONG_SUMMARY
            )
            for n in range(3, 9)
        ),
    )
    return Issue(
        date=dt.date(2022, 2, 2),
        title="嵌入式AI简报 (2022-02-02)",
        headline="<img src=x onerror=alert(1)>\r\nBcc: mallory@example.com",
        tagline="'single' & \"double\"",
        lead="导读 **<b>x</b>** [js](javascript:alert(1)) 😀\n第二行",
        quick_news=(
            QuickNews(text="<a href='javascript:x'>news</a>", url="javascript:alert(1)"),
            QuickNews(text="空链接", url=""),
        ),
        sections=(
            Section(name="新闻<script>", position=1, items=items),
            Section(name="空", position=2, items=()),
            Section(name='论文 & "more"', position=3, items=(item,)),
        ),
    )


@pytest.mark.parametrize("policy", [TRACKED, NO_PUBLIC_URL], ids=["tracked", "no-public-url"])
def test_hostile_content_stays_escaped_and_valid(policy: LinkPolicy) -> None:
    issue = hostile_issue()
    document = build_document(issue, LinkRewriter(policy, issue.date), MD)
    template = render_email(document, mail_from=SENDER, unsubscribe_mailto=MAILTO)
    validate_email(template, document)
    message = parse_message(template.personalize(to="a@example.com", unsubscribe_url="https://x.example/u/1"))
    text, html = (str(part.get_content()) for part in message.iter_parts())
    assert "<script" not in html.lower()
    assert "<img" not in html
    assert "<b>" not in html
    assert "<i>" not in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert "&amp;amp;" in html  # a literal "&amp;" in a title shows as "&amp;"
    assert 'href=""' not in html
    assert "javascript:" not in re.sub(r">[^<]*<", "><", html)
    assert message["Bcc"] is None
    assert "\n" not in template.subject
    assert str(message["Subject"]) == template.subject
    assert "😀👍🏽" in html
    assert "😀👍🏽" in text
    assert "<script>alert('x')</script>" in text  # plain text is not markup: shown as written
    assert "空" not in [section.name for section in read_html(html).sections]
    # Six 10,000-character summaries are over the budget: trimmed, every section kept, counts exact.
    assert len(html.encode("utf-8")) <= EMAIL_HTML_MAX_BYTES
    kept = {section.name: section for section in template.document.sections}
    assert len(kept["新闻<script>"].items) + kept["新闻<script>"].omitted == 8
    long_items = [item for item in kept["新闻<script>"].items if item.title.startswith("long")]
    assert long_items
    assert all(len(item.summary_text) <= 400 for item in long_items)
    assert all(item.summary_text.endswith("…") for item in long_items)


# --- truncation under any budget -----------------------------------------------------------------------

DOCS = {path.stem: issue_document(path) for path in FILES}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DOCS)), budget=st.integers(min_value=4_000, max_value=50_000))
def test_truncation_keeps_every_section_and_exact_counts(name: str, budget: int) -> None:
    document = DOCS[name]
    try:
        template = render_email(document, mail_from=SENDER, unsubscribe_mailto=MAILTO, max_html_bytes=budget)
    except DoesNotFit:
        # Refused, never exceeded: even one short title per section is over this budget.
        assert budget < 16_000
        return
    validate_email(template, document, budget=budget)
    validate_email(template, document, unsubscribe_url=LONG_UNSUBSCRIBE_URL, budget=budget)


# --- the screenshot ------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
SCREEN_WIDTH, SCREEN_HEIGHT = 800, 7600  # the whole 2020-07-02 digest is about 7,000 px tall at 800 wide


def png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the (still filtered) scanlines of a PNG, with the standard library only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    stride = 1 + width * channels * depth // 8
    raw = zlib.decompress(idat)
    assert len(raw) == stride * height
    return width, height, [raw[row * stride : (row + 1) * stride] for row in range(height)]


def test_screenshot_of_the_html_part(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium", pytrace=False
        )
    template = render_email(
        issue_document(corpus_file("2020-07-02")), mail_from=SENDER, unsubscribe_mailto=MAILTO
    )
    page = tmp_path / "email-2020-07-02.html"
    page.write_text(str(template.to_dict()["html"]), encoding="utf-8")
    screenshot = tmp_path / "email-2020-07-02.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={SCREEN_WIDTH},{SCREEN_HEIGHT}",
        f"--screenshot={screenshot}",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert screenshot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    width, height, rows = png_rows(screenshot.read_bytes())
    assert (width, height) == (SCREEN_WIDTH, SCREEN_HEIGHT)
    # A blank page filters to a handful of distinct scanlines; text makes hundreds.
    assert len(set(rows)) > 300, "the screenshot looks blank"
    # The last section and the footer are drawn too, not only the top of the column.
    assert len(set(rows[SCREEN_HEIGHT // 2 :])) > 150, "the lower half of the digest looks blank"
