"""Email: an issue is rendered ONCE into an `EmailTemplate`, then personalised per subscriber by string
replacement only.

render_email(document) -> EmailTemplate(subject, preheader, html, text, ...)   Jinja2 + css-inline, once
EmailTemplate.personalize(to=..., unsubscribe_url=..., preferences_url=...) -> EmailMessage   str.replace

The subscriber-specific parts (recipient address, unsubscribe URL, preference page URL, and with per-reader
clicks the reader's signed id on tracked links) are marker strings in the rendered template. A marker carries
a hash of the whole document, so issue content cannot contain it by accident or on purpose. The HTML is
written with a <style> block in templates/email.html.j2; css-inline copies every rule into style="" attributes
and keeps only the @media rules in a <style> in <head> (clients that read it get the narrow-screen layout;
clients that drop <style> still get every other style inline). The HTML stays under EMAIL_HTML_MAX_BYTES after
personalisation, trimmed section by section with channels.fitting when needed.

Per-reader clicks (channels/links.py `per_reader`): each tracked link `{public_url}/r/{token}` is rendered
as `{public_url}/r/{token}?s={reader marker}`, and `personalize` puts the subscriber's signed reader id
(bot/tokens.py ReaderIds) in place of the marker, or drops the whole `?s=...` when it has none (a test send,
a sample), so a mail never carries a marker. The id is shorter than the marker: the HTML budget counts the
marker's bytes and subtracts what the id saves.

The link to the reader's preference page (bot/preferences.py: topics, a pause) stands in the footer after
the unsubscribe link, in both parts, styled like it. It is added here to what the templates render, so
every template that has an unsubscribe link gets it; a mail personalised without a preference URL (a test
send: no subscriber stands behind it) has the whole link taken out again, not a dead one.

This module's package is named `email` inside `channels`; absolute imports make `import email.message`
here mean the standard library (checked by the tests), so it does not shadow it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html as html_lib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from functools import cache
from urllib.parse import urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from channels.base import TEMPLATE_DIR
from channels.document import IssueDocument, ItemBlock, Run, shorten_text

# MAX_ADDRESS_CHARS is re-exported: the HTML budget here reserves room for the longest address.
from channels.email.address import MAX_ADDRESS_CHARS as MAX_ADDRESS_CHARS
from channels.email.address import check_email_address
from channels.fitting import fit, more_line, non_empty
from channels.links import RewrittenLink
from content.errors import BadInput

# Gmail clips a message whose HTML is over ~102 KB, hiding the rest (the footer and its unsubscribe link):
# stay under ~85 KB of UTF-8 (docs/channels.md, "Gmail clipping and layout"; ~102 KB is unofficial: Google
# publishes no figure).
EMAIL_HTML_MAX_BYTES = 85_000
# Not a platform limit: subject lines past ~60 characters are cut in inbox lists (Mailchimp's subject-line
# guidance: at most 9 words and 60 characters). An editorial choice.
SUBJECT_MAX_CHARS = 60
# Not a platform limit: inbox previews show roughly 40-140 characters depending on the client; the rest
# of a longer preheader is never seen. An editorial choice.
PREHEADER_MAX_CHARS = 100
# Our own bound on unsubscribe URLs, so List-Unsubscribe (both URLs) stays far below RFC 5322 2.1.1's
# 998-character line limit and the HTML budget can reserve room for the URL before it is known.
MAX_UNSUBSCRIBE_URL_CHARS = 512
# Our own bound on the reader id of tracked links (bot/tokens.py ReaderIds makes 16 characters): URL-safe
# base64, which neither HTML nor a URL query escapes.
MAX_READER_ID_CHARS = 32
READER_QUERY = "?s="
# html.escape turns one character into at most 6 bytes (' -> &#x27;); a UTF-8 character is at most 4.
_ESCAPED_BYTES_PER_CHAR = 6

HTML_TEMPLATE = "email.html.j2"
TEXT_TEMPLATE = "email.txt.j2"
DEFAULT_NAME = "嵌入式AI简报"
QUICK_NEWS_HEADING = "热身小新闻"
# The subscriber `to_dict()` and `preview()` show when the caller names none (CLI samples, goldens).
SAMPLE_RECIPIENT = "reader@example.com"
SAMPLE_UNSUBSCRIBE_URL = "https://jianbao.example/unsubscribe/SAMPLE-TOKEN"
SAMPLE_PREFERENCES_URL = "https://jianbao.example/preferences/SAMPLE-TOKEN"
PREFERENCES_LABEL = "管理订阅/选择话题"
# The sample's Date: the issue's day at 08:00 in China (fixed, so samples and goldens are stable).
SAMPLE_SEND_TIME = dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))

_DATE_IN_TITLE = re.compile(r"\s*[(（]\s*\d{4}-\d{1,2}-\d{1,2}\s*[)）]\s*")
_WHITESPACE = re.compile(r"\s+")
_LINE_BREAKS = ("\r", "\n")
_URL_FORBIDDEN = re.compile(r"[\s<>\"'\\^`{|}\x00-\x1f\x7f]")
_READER_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_READER_ID_CHARS}}}")
_ADDRESS_FORBIDDEN = re.compile(r"[\s<>\"\\,;()\[\]\x00-\x1f\x7f]")  # an addr-spec without quoting


@dataclass(frozen=True, slots=True)
class SectionView:
    """What the templates show of a section: its items and its "还有 N 条" line, if any."""

    name: str
    anchor: str
    items: tuple[ItemBlock, ...]
    more: str | None
    more_url: str | None
    focus: bool = False  # a reader's "你关注的" block: shown before the lead


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    """One issue's email, rendered and inlined once; `personalize` makes each subscriber's message."""

    date: dt.date
    subject: str
    preheader: str
    html: str  # with the markers below in place of the subscriber's parts
    text: str
    mail_from: str
    message_id_domain: str
    unsubscribe_mailto: str | None  # "mailto:...?subject=unsubscribe" for List-Unsubscribe, or None
    unsubscribe_marker: str
    recipient_marker: str
    document: IssueDocument  # the (possibly trimmed) document the parts were rendered from
    links: tuple[RewrittenLink, ...]  # the links the parts show
    html_max_bytes: int = EMAIL_HTML_MAX_BYTES
    html_reserve: int = 0  # bytes a subscriber's parts may add to `html`, at most (negative: save)
    reader_marker: str = ""  # in tracked links' `?s=` when they carry the reader's id; "" when not
    preferences_marker: str = ""  # the preference page's URL in the footer link below; "" when none
    preferences_html: str = ""  # that footer link exactly as it stands in `html`, marker included
    preferences_text: str = ""  # ... and in `text`

    def personalize(
        self,
        *,
        to: str,
        unsubscribe_url: str,
        date: dt.datetime | None = None,
        reader: str | None = None,
        preferences_url: str | None = None,
    ) -> EmailMessage:
        """The complete message for one subscriber: string replacement, no rendering.

        `to` is an address, optionally with a display name; `unsubscribe_url` is the subscriber's
        opaque one-click URL (RFC 8058: the token in it is the only credential). `date` (timezone-aware)
        defaults to now. `reader` is the subscriber's signed reader id for tracked links (per-reader
        clicks); without one the links carry none. `preferences_url` is their preference page; without one
        the footer has no link to it. Raises ValueError for CR/LF (header injection) or
        malformed values.
        """
        address = check_recipient(to)
        check_unsubscribe_url(unsubscribe_url)
        if reader is not None and not _READER_ID.fullmatch(reader):
            raise ValueError(f"a reader id is 1-{MAX_READER_ID_CHARS} URL-safe base64 characters")
        when = date or dt.datetime.now(dt.UTC)
        if when.tzinfo is None:
            raise ValueError("the Date needs a timezone-aware datetime")
        html, text = self._with_preferences(*self._with_reader(reader), preferences_url)
        html_escaped = html_lib.escape(unsubscribe_url, quote=True)
        html = html.replace(self.unsubscribe_marker, html_escaped).replace(
            self.recipient_marker, html_lib.escape(address, quote=True)
        )
        text = text.replace(self.unsubscribe_marker, unsubscribe_url).replace(self.recipient_marker, address)
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = self.subject
        message["Date"] = format_datetime(when)
        message["Message-ID"] = self.message_id(address)
        message["MIME-Version"] = "1.0"
        targets = [f"<{unsubscribe_url}>"]
        if self.unsubscribe_mailto:
            targets.append(f"<{self.unsubscribe_mailto}>")
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        # A deterministic boundary (the default one is random): a hash of the parts, so no part holds it.
        digest = hashlib.sha256(f"{message['Message-ID']}\n{text}\n{html}".encode()).hexdigest()
        message.set_boundary(f"=_jianbao_{digest[:24]}")
        return message

    def _with_reader(self, reader: str | None) -> tuple[str, str]:
        """`html` and `text` with the reader marker replaced by `reader`, or dropped with its query."""
        if not self.reader_marker:
            return self.html, self.text
        if reader is None:
            marker, reader = f"{READER_QUERY}{self.reader_marker}", ""
        else:
            marker = self.reader_marker
        return self.html.replace(marker, reader), self.text.replace(marker, reader)

    def _with_preferences(self, html: str, text: str, url: str | None) -> tuple[str, str]:
        if not self.preferences_marker:
            return html, text
        if url is None:
            return html.replace(self.preferences_html, ""), text.replace(self.preferences_text, "")
        check_unsubscribe_url(url, what="preferences")
        escaped = html_lib.escape(url, quote=True)
        return html.replace(self.preferences_marker, escaped), text.replace(self.preferences_marker, url)

    def message_id(self, address: str) -> str:
        """Stable per (issue, subscriber): a resend of the same issue has the same Message-ID."""
        digest = hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]
        return f"<jianbao.{self.date.isoformat()}.{digest}@{self.message_id_domain}>"

    def to_dict(
        self,
        *,
        to: str = SAMPLE_RECIPIENT,
        unsubscribe_url: str = SAMPLE_UNSUBSCRIBE_URL,
        date: dt.datetime | None = None,
        preferences_url: str | None = SAMPLE_PREFERENCES_URL,
    ) -> dict[str, object]:
        """The JSON contract of `jianbao render`, personalised for a sample subscriber (by default
        SAMPLE_RECIPIENT at SAMPLE_UNSUBSCRIBE_URL and SAMPLE_PREFERENCES_URL, dated the issue's day at
        08:00 +08:00)."""
        message = self.personalize(
            to=to,
            unsubscribe_url=unsubscribe_url,
            date=date or self.sample_date,
            preferences_url=preferences_url,
        )
        return {
            "channel": "email",
            "subject": self.subject,
            "preheader": self.preheader,
            "html": _part(message, "html"),
            "text": _part(message, "plain"),
            "eml": message.as_bytes().decode("utf-8"),
            "links": [{"original": link.original, "rendered": link.rendered} for link in self.links],
        }

    def preview(self) -> str:
        _, text = self._with_preferences(*self._with_reader(None), SAMPLE_PREFERENCES_URL)
        text = text.replace(self.unsubscribe_marker, SAMPLE_UNSUBSCRIBE_URL).replace(
            self.recipient_marker, SAMPLE_RECIPIENT
        )
        return f"主题：{self.subject}\n预览：{self.preheader}\n\n{text}"

    @property
    def sample_date(self) -> dt.datetime:
        return dt.datetime.combine(self.date, SAMPLE_SEND_TIME)

    @property
    def html_worst_bytes(self) -> int:
        """An upper bound of any subscriber's HTML size in UTF-8 bytes (always <= html_max_bytes)."""
        return len(self.html.encode("utf-8")) + self.html_reserve


def render_email(
    document: IssueDocument,
    *,
    mail_from: str,
    unsubscribe_mailto: str | None = None,
    max_html_bytes: int = EMAIL_HTML_MAX_BYTES,
) -> EmailTemplate:
    """Render one issue's email once. `mail_from` is the From header ("Name <addr@domain>"); its domain
    makes the Message-IDs. `unsubscribe_mailto` (an address) adds a mailto: to List-Unsubscribe.

    Raises ValueError for a malformed sender, channels.fitting.DoesNotFit when even the most trimmed
    document is over `max_html_bytes`.
    """
    domain = _sender_domain(mail_from)
    mailto = None
    if unsubscribe_mailto is not None:
        mailto = f"mailto:{_single_address(unsubscribe_mailto, 'unsubscribe')}?subject=unsubscribe"
    nonce = hashlib.sha256(repr(document).encode("utf-8")).hexdigest()[:20]
    unsubscribe_marker = f"JIANBAO-UNSUBSCRIBE-{nonce}"
    recipient_marker = f"JIANBAO-RECIPIENT-{nonce}"
    preferences_marker = f"JIANBAO-PREFERENCES-{nonce}"
    reader_marker = f"JIANBAO-READER-{nonce}" if any(link.per_reader for link in document.links) else ""
    subject = email_subject(document)

    def attempt(candidate: IssueDocument) -> EmailTemplate | None:
        html, text, preheader = _render(candidate, subject, unsubscribe_marker, recipient_marker)
        if reader_marker:
            html, text = _mark_readers(html, text, candidate.links, reader_marker)
        html, text, preferences_html, preferences_text = _add_preferences_link(
            html, text, unsubscribe_marker, preferences_marker
        )
        reserve = (html.count(unsubscribe_marker) + html.count(preferences_marker)) * (
            MAX_UNSUBSCRIBE_URL_CHARS * _ESCAPED_BYTES_PER_CHAR - len(unsubscribe_marker)
        ) + html.count(recipient_marker) * (
            MAX_ADDRESS_CHARS * _ESCAPED_BYTES_PER_CHAR - len(recipient_marker)
        )
        if reader_marker:
            # Negative: an id is shorter than the marker it replaces (and no id drops `?s=` too).
            reserve += html.count(reader_marker) * (MAX_READER_ID_CHARS - len(reader_marker))
        if len(html.encode("utf-8")) + reserve > max_html_bytes:
            return None
        return EmailTemplate(
            date=candidate.date,
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            mail_from=mail_from,
            message_id_domain=domain,
            unsubscribe_mailto=mailto,
            unsubscribe_marker=unsubscribe_marker,
            recipient_marker=recipient_marker,
            document=candidate,
            links=_shown_links(candidate),
            html_max_bytes=max_html_bytes,
            html_reserve=reserve,
            reader_marker=reader_marker,
            preferences_marker=preferences_marker,
            preferences_html=preferences_html,
            preferences_text=preferences_text,
        )

    template, _ = fit(document, attempt)
    return template


# --- text helpers --------------------------------------------------------------------------------------


def email_subject(document: IssueDocument) -> str:
    """ "嵌入式AI简报 2020-07-02 | headline", or the first items' titles when there is no headline."""
    name = _one_line(_DATE_IN_TITLE.sub(" ", document.title)) or DEFAULT_NAME
    prefix = f"{name} {document.date.isoformat()}"
    topic = _one_line(document.headline or "")
    if not topic:
        firsts = [_one_line(section.items[0].title) for section in document.sections if section.items]
        topic = " / ".join(title for title in firsts if title)
    if not topic:
        return prefix
    room = max(SUBJECT_MAX_CHARS - len(prefix) - 3, 12)
    return f"{prefix} | {shorten_text(topic, room)}"


def preheader_text(document: IssueDocument) -> str:
    """The hidden preview line: the lead (plain text in the document), else the items' titles."""
    if document.lead:
        source = document.lead
    else:
        titles = [
            item.title
            for section in non_empty(document.sections)
            if not section.focus
            for item in section.items
        ]
        source = f"本期 {document.item_count} 条：" + "；".join(titles)
    return shorten_text(_one_line(source), PREHEADER_MAX_CHARS)


def check_recipient(to: str) -> str:
    """The addr-spec of `to` ("a@b.example" or "Name <a@b.example>"); ValueError if malformed.

    The address itself must pass the subscriber address check (channels.email.address): one rule for
    what may be stored and what may be mailed."""
    address = _single_address(to, "recipient")
    try:
        return check_email_address(address)
    except BadInput as error:
        raise ValueError(f"not one recipient address: {error.message}") from None


def check_unsubscribe_url(url: str, *, what: str = "unsubscribe") -> None:
    """Also the rule of the preference page's URL (`what`), which goes into the same footer."""
    if any(character in url for character in _LINE_BREAKS):
        raise ValueError(f"the {what} URL contains a line break")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"the {what} URL must be an absolute http(s) URL: {url!r}")
    if not url.isascii() or _URL_FORBIDDEN.search(url) or len(url) > MAX_UNSUBSCRIBE_URL_CHARS:
        raise ValueError(f"the {what} URL must be ASCII, unquoted and short: {url!r}")


# --- rendering -----------------------------------------------------------------------------------------


def _render(document: IssueDocument, subject: str, unsubscribe: str, recipient: str) -> tuple[str, str, str]:
    preheader = preheader_text(document)
    context: dict[str, object] = {
        "subject": subject,
        "preheader": preheader,
        "title": document.title,
        "date": document.date.isoformat(),
        "headline": document.headline,
        "tagline": document.tagline,
        "lead": document.lead,
        "issue_url": document.issue_url,
        "quick_news_heading": QUICK_NEWS_HEADING,
        "quick_news": document.quick_news,
        "sections": _sections(document),
        "unsubscribe_url": unsubscribe,
        "recipient": recipient,
    }
    environment = _environment()
    html = environment.get_template(HTML_TEMPLATE).render(context)
    text = environment.get_template(TEXT_TEMPLATE).render(context)
    return _inliner().inline(html), text, preheader


def _add_preferences_link(
    html: str, text: str, unsubscribe: str, preferences: str
) -> tuple[str, str, str, str]:
    """`html` and `text` with the preference link after the unsubscribe link, and that link as it stands
    in each (what `personalize` takes out again when it has no URL for it). In the HTML it copies the
    unsubscribe link's tag, so it has the same inlined style; in the text it is a line of its own."""
    anchor = re.search(rf'<a href="{re.escape(unsubscribe)}"[^>]*>', html)
    line = re.search(rf"^.*{re.escape(unsubscribe)}.*$", text, re.MULTILINE)
    closing = -1 if anchor is None else html.find("</a>", anchor.end())
    if anchor is None or line is None or closing < 0:
        raise ValueError("the email templates have no unsubscribe link to put the preference link beside")
    link_html = f" · {anchor.group(0).replace(unsubscribe, preferences)}{PREFERENCES_LABEL}</a>"
    link_text = f"\n{PREFERENCES_LABEL}：{preferences}"
    after = closing + len("</a>")
    html = html[:after] + link_html + html[after:]
    text = text[: line.end()] + link_text + text[line.end() :]
    return html, text, link_html, link_text


def _mark_readers(html: str, text: str, links: tuple[RewrittenLink, ...], marker: str) -> tuple[str, str]:
    """Each per-reader tracking link given `?s={marker}`. A tracking link is `{public_url}/r/{token}`
    with a fixed-length token, so none is the beginning of another and plain replacement finds only it."""
    for link in links:
        if link.per_reader and link.token:
            marked = f"{link.rendered}{READER_QUERY}{marker}"
            html = html.replace(
                html_lib.escape(link.rendered, quote=True), html_lib.escape(marked, quote=True)
            )
            text = text.replace(link.rendered, marked)
    return html, text


def _sections(document: IssueDocument) -> tuple[SectionView, ...]:
    shown = {id(section) for section in non_empty(document.sections)}
    return tuple(
        SectionView(
            name=section.name,
            anchor="focus" if section.focus else f"section-{position}",  # as IssueDocument.section_url
            items=section.items,
            more=more_line(section.omitted) if section.omitted else None,
            more_url=document.section_url(section) or document.issue_url,
            focus=section.focus,
        )
        for position, section in document.numbered()
        if id(section) in shown
    )


def _shown_links(document: IssueDocument) -> tuple[RewrittenLink, ...]:
    shown: set[str] = set()
    for item in (*document.quick_news, *(item for section in document.sections for item in section.items)):
        if item.url:
            shown.add(item.url)
        shown.update(run.url for run in item.summary if run.url)
    return tuple(link for link in document.links if link.rendered in shown)


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:  # pragma: no cover - personalize always makes both parts
        raise LookupError(subtype)
    return str(body.get_content())


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _single_address(value: str, what: str) -> str:
    """The addr-spec of a header value holding exactly one address, else ValueError."""
    if any(character in value for character in _LINE_BREAKS):
        raise ValueError(f"the {what} contains a line break")
    addresses = getaddresses([value])
    address = addresses[0][1] if len(addresses) == 1 else ""
    local, at, domain = address.rpartition("@")
    if (
        not (local and at and domain)
        or len(address) > MAX_ADDRESS_CHARS
        or _ADDRESS_FORBIDDEN.search(address)
    ):
        raise ValueError(f"not one {what} address: {value!r}")
    return address


def _sender_domain(mail_from: str) -> str:
    domain = _single_address(mail_from, "sender").rpartition("@")[2]
    return domain.lower() if domain.isascii() else domain.encode("idna").decode("ascii")


def _runs_text(runs: tuple[Run, ...]) -> str:
    """Summary runs as plain text: a linked run shows its URL after its text."""
    parts = []
    for run in runs:
        if run.url and run.text.strip() != run.url:
            parts.append(f"{run.text} <{run.url}>")
        elif run.url:
            parts.append(f"<{run.url}>")
        else:
            parts.append(run.text)
    return "".join(parts)


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["runs_text"] = _runs_text
    return environment


@cache
def _inliner() -> css_inline.CSSInliner:
    # keep_at_rules: @media rules cannot be inlined, so they stay in one <style> in <head>; everything
    # else is inlined and its rules removed. Nothing is fetched: rendering stays pure.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)
