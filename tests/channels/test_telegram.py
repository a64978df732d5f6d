"""Telegram: every payload checked against the Bot API's rules by a validator written here.

The validator parses each message with its own html.parser, independently of the module's helpers:
- HTML style: only b/strong, i/em, u/ins, s/strike/del, tg-spoiler, a href, code, pre (with
  code class="language-x" inside), blockquote (expandable); tags properly nested and closed; < > &
  outside tags only as entities (Bot API "Formatting options", summarised in
  docs/channels.md, "HTML style");
- sizes: 1-4096 characters after entity parsing, counted in UTF-16 code units; at most ~100
  entities; and "raw text over 32768 bytes is rejected before parsing" (docs/channels.md, "Text limits";
  the entity and raw-byte limits are unofficial);
- links: non-empty href with http(s):// or mailto:.

Goldens: regenerate with JIANBAO_REGENERATE_GOLDEN=1 and read the diff before committing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.document import IssueDocument, SectionBlock, build_document, summary_parser
from channels.fitting import DoesNotFit, non_empty
from channels.links import LinkPolicy, LinkRewriter
from channels.telegram import (
    TELEGRAM_MAX_ENTITIES,
    TELEGRAM_MAX_RAW_BYTES,
    TELEGRAM_MAX_TEXT,
    TelegramPayload,
    render_telegram,
    visible_length,
)
from content.model import Issue, Item, QuickNews, Section
from content.parser import parse_issue
from content.source import read_issue_file
from tests.content.corpus import corpus_files

FILES = corpus_files()
GOLDEN = Path(__file__).parent / "golden"
MD = summary_parser()
SECRET = b"telegram-test-secret"

POLICIES = {
    "tracked": LinkPolicy("telegram", public_url="https://jianbao.example", tracking=True, secret=SECRET),
    "no-public-url": LinkPolicy("telegram"),
}
GOLDEN_POLICY = LinkPolicy("telegram", public_url="https://jianbao.example", tracking=False)

# --- the validator ---------------------------------------------------------------------------------

# Telegram's HTML style (docs/channels.md, "HTML style"): tag -> attributes it may carry.
ALLOWED = {
    "b": set(),
    "strong": set(),
    "i": set(),
    "em": set(),
    "u": set(),
    "ins": set(),
    "s": set(),
    "strike": set(),
    "del": set(),
    "tg-spoiler": set(),
    "a": {"href"},
    "code": {"class"},
    "pre": set(),
    "blockquote": {"expandable"},
}
MAX_RAW_BYTES = 32768  # docs/channels.md, "Text limits" (unofficial): raw text over 32768 bytes is rejected
MAX_UNITS = 4096  # 1-4096 characters after entity parsing (https://core.telegram.org/bots/api#sendmessage)
MAX_ENTITIES = 100  # docs/channels.md, "Text limits" (unofficial): ~100 entities per message
ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
TAG = re.compile(r"<[^<>]*>")
TAG_SHAPE = re.compile(r'</?[a-z][a-z-]*(?:\s+[a-z-]+(?:="[^"<>]*")?)*\s*>')


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TelegramHtml(HTMLParser):
    """Telegram's view of one message: its visible text, entities, links, and every rule broken."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.entities = 0
        self.hrefs: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, visible text) of every <a>
        self.errors: list[str] = []
        self._link_text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED:
            self.errors.append(f"tag <{tag}> is not in Telegram's HTML style")
            return
        names = [name for name, _ in attrs]
        if set(names) - ALLOWED[tag] or len(names) != len(set(names)):
            self.errors.append(f"<{tag}> has attributes {names}")
        values = dict(attrs)
        if tag == "a":
            href = values.get("href") or ""
            if not href.strip() or not href.startswith(("http://", "https://", "mailto:")):
                self.errors.append(f"bad href {href!r}")
            if "a" in self.stack:
                self.errors.append("a link inside a link")
            self.hrefs.append(href)
            self._link_text = []
        if tag == "code" and "class" in values:
            if not self.stack or self.stack[-1] != "pre":
                self.errors.append("code with a language outside pre")
            if not re.fullmatch(r"language-[\w+-]+", values["class"] or ""):
                self.errors.append(f"code class {values['class']!r}")
        if (
            self.stack
            and self.stack[-1] in ("code", "pre")
            and not (tag == "code" and self.stack[-1] == "pre")
        ):
            self.errors.append(f"<{tag}> inside <{self.stack[-1]}>")
        self.stack.append(tag)
        self.entities += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "a" and self._link_text is not None:
            text = "".join(self._link_text)
            if not text.strip():
                self.errors.append("a link with no visible text")
            self.links.append((self.hrefs[-1], text))
            self._link_text = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._link_text is not None:
            self._link_text.append(data)

    def handle_comment(self, data: str) -> None:
        self.errors.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.errors.append("declaration")

    def handle_pi(self, data: str) -> None:
        self.errors.append("processing instruction")

    @property
    def visible(self) -> str:
        return "".join(self.text)


def parse_message(raw: str) -> TelegramHtml:
    parser = TelegramHtml()
    # Raw-level rules the tolerant html.parser would let pass: every tag well formed, no stray < or >
    # in text, every & starts an entity Telegram decodes.
    for tag in TAG.findall(raw):
        if not TAG_SHAPE.fullmatch(tag):
            parser.errors.append(f"malformed tag {tag!r}")
    outside = TAG.sub("", raw)
    if "<" in outside or ">" in outside:
        parser.errors.append("unescaped < or > in text")
    if "&" in ENTITY.sub("", raw):
        parser.errors.append("a bare & that is not an entity")
    parser.feed(raw)
    parser.close()
    if parser.stack:
        parser.errors.append(f"unclosed tags {parser.stack}")
    return parser


def validate(payload: TelegramPayload) -> list[TelegramHtml]:
    """Every rule of the Bot API a message must follow; returns the parsed messages."""
    data = payload.to_dict()
    json.dumps(data)  # the JSON contract is JSON
    assert data["channel"] == "telegram"
    assert set(data) == {"channel", "messages", "links"}
    messages = data["messages"]
    assert isinstance(messages, list)
    assert messages
    parsed = []
    for message in messages:
        assert set(message) == {"text", "parse_mode", "disable_web_page_preview"}
        assert message["parse_mode"] == "HTML"
        assert message["disable_web_page_preview"] is True
        raw = message["text"]
        assert len(raw.encode("utf-8")) <= MAX_RAW_BYTES
        html = parse_message(raw)
        assert html.errors == [], html.errors
        assert html.visible.strip(), "Telegram rejects an empty message"
        assert units(html.visible) <= MAX_UNITS
        assert html.entities <= MAX_ENTITIES
        parsed.append(html)
    links = data["links"]
    assert isinstance(links, list)
    for link in links:
        assert link["original"]
        assert link["rendered"].startswith(("http://", "https://", "mailto:"))
    assert [message.link_preview_options for message in payload.messages] == [{"is_disabled": True}] * len(
        messages
    )
    return parsed


@pytest.mark.parametrize(
    "raw",
    [
        "<p>段落</p>",
        "a<br>b",
        "<b>unclosed",
        "<b><i>crossed</b></i>",
        '<a href="">empty</a>',
        '<a href="javascript:alert(1)">js</a>',
        '<a href="https://a.example"> </a>',
        '<a href="https://a.example"><a href="https://b.example">nested</a></a>',
        '<b class="x">attribute</b>',
        "<code><b>inside code</b></code>",
        "a & b",
        "1 < 2",
        "1 > 2",
        "<b/>",
    ],
)
def test_the_validator_rejects_what_telegram_rejects(raw: str) -> None:
    assert parse_message(raw).errors


def test_the_validator_accepts_the_whole_html_style() -> None:
    raw = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike><del>d</del>"
        '<tg-spoiler>t</tg-spoiler><a href="https://a.example/?x=1&amp;y=&quot;2&quot;">a</a><code>c</code>'
        '<pre><code class="language-python">p</code></pre><blockquote expandable>q</blockquote> &lt;&gt;&amp; 😀'
    )
    html = parse_message(raw)
    assert html.errors == []
    assert html.entities == 15
    assert html.hrefs == ['https://a.example/?x=1&y="2"']
    assert units(html.visible) == len("bsieunskdtacpq <>& ") + 2


# --- helpers -----------------------------------------------------------------------------------------


def issue_of(path: Path) -> Issue:
    return parse_issue(read_issue_file(path))


def document_of(issue: Issue, policy: LinkPolicy) -> IssueDocument:
    return build_document(issue, LinkRewriter(policy, issue.date), MD)


ISSUES = {path.stem: issue_of(path) for path in FILES}
DOCUMENTS = {
    (stem, name): document_of(issue, policy)
    for stem, issue in ISSUES.items()
    for name, policy in POLICIES.items()
}


def section_lines(parsed: list[TelegramHtml], sections: tuple[SectionBlock, ...]) -> dict[str, list[str]]:
    """Each shown section's visible lines, from its header to the next section (continuations joined)."""
    headers = {f"【{section.name}】": section.name for section in sections}
    headers |= {f"【{section.name}】（续）": section.name for section in sections}
    found: dict[str, list[str]] = {}
    current: str | None = None
    for html in parsed:
        for line in html.visible.split("\n"):
            if line in headers:
                current = headers[line]
                found.setdefault(current, [])
            elif current is not None:
                found[current].append(line)
    return found


def check_sections(payload: TelegramPayload, parsed: list[TelegramHtml], original: IssueDocument) -> None:
    """Every non-empty section is named, keeps its first item, and says exactly how many were cut."""
    shown = non_empty(payload.document.sections)
    assert [section.name for section in shown] == [section.name for section in non_empty(original.sections)]
    lines = section_lines(parsed, shown)
    assert list(lines) == [section.name for section in shown]
    links = {href: text for html in parsed for href, text in html.links}
    for section, before in zip(shown, non_empty(original.sections), strict=True):
        assert len(section.items) + section.omitted == len(before.items) + before.omitted
        assert section.items, "a section keeps its first item"
        body = [line for line in lines[section.name] if line]
        for number, item in enumerate(section.items, 1):
            assert any(line.startswith(f"{number}. ") and item.title.strip() in line for line in body), (
                section.name,
                number,
                item.title,
            )
        more = [line for line in body if re.fullmatch(r"还有 \d+ 条", line)]
        if section.omitted:
            assert body[-1] == f"还有 {section.omitted} 条"
            assert more == [f"还有 {section.omitted} 条"]
            target = payload.document.section_url(section)
            if target:
                assert links.get(target) == f"还有 {section.omitted} 条"
        else:
            assert more == []


def primary_links(document: IssueDocument) -> set[str]:
    urls = {item.url for section in document.sections for item in section.items if item.url}
    return urls | {news.url for news in document.quick_news if news.url}


def hrefs(parsed: list[TelegramHtml]) -> set[str]:
    return {href for html in parsed for href in html.hrefs}


# --- the corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_every_issue_renders_valid_messages(path: Path, policy: str) -> None:
    document = DOCUMENTS[path.stem, policy]
    full = render_telegram(document)
    parsed = validate(full)
    assert full.document == document, "the full payload trims nothing from a real issue"
    assert primary_links(document) <= hrefs(parsed)
    check_sections(full, parsed, document)
    # Splits fall between blocks: every later message opens on a block or a section continuation.
    for html, message in zip(parsed[1:], full.messages[1:], strict=True):
        assert message.text.startswith("<b>"), message.text[:40]
        assert html.visible.startswith(("【", "导读", "热身小新闻"))
    # The module's own counter agrees with the validator's parser.
    assert [visible_length(message.text) for message in full.messages] == [
        units(html.visible) for html in parsed
    ]
    # Tracking on: every link goes through the redirect; without a public URL: the originals.
    if policy == "tracked":
        assert all(href.startswith("https://jianbao.example/") for href in hrefs(parsed))
    else:
        assert not any("jianbao.example" in href for href in hrefs(parsed))
    assert {link["rendered"] for link in full.to_dict()["links"]} >= hrefs(parsed) - {
        document.issue_url,
        *(document.section_url(section) for section in document.sections),
    }

    one = render_telegram(document, max_messages=1)
    (parsed_one,) = validate(one)
    assert primary_links(one.document) - {news.url for news in document.quick_news} <= hrefs([parsed_one])
    check_sections(one, [parsed_one], document)


def test_full_mode_uses_as_few_messages_as_the_blocks_allow() -> None:
    """Greedy packing: the first block of each message would not have fitted in the one before."""
    for (stem, policy), document in DOCUMENTS.items():
        if policy != "tracked":
            continue
        full = render_telegram(document)
        texts = [message.text for message in full.messages]
        for before, after in itertools.pairwise(texts):
            first_block = after.split("\n\n")[0]
            if first_block.startswith("<b>【") and "】</b>（续）\n" in first_block:
                first_block = first_block.split("\n", 1)[1]
            merged = parse_message(f"{before}\n\n{first_block}")
            assert units(merged.visible) > TELEGRAM_MAX_TEXT or merged.entities > TELEGRAM_MAX_ENTITIES, stem
        assert len(full.messages) <= 3


def test_limits_are_the_documented_ones() -> None:
    assert (TELEGRAM_MAX_TEXT, TELEGRAM_MAX_ENTITIES, TELEGRAM_MAX_RAW_BYTES) == (
        MAX_UNITS,
        MAX_ENTITIES,
        MAX_RAW_BYTES,
    )


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        render_telegram(DOCUMENTS["2020-07-02", "tracked"], max_messages=0)


# --- goldens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "max_messages", "name"),
    [
        ("2020-07-02", None, "telegram-2020-07-02.json"),
        ("2021-08-01", None, "telegram-2021-08-01.json"),
        ("2020-07-02", 1, "telegram-2020-07-02-one-message.json"),
    ],
)
def test_golden_payload(stem: str, max_messages: int | None, name: str) -> None:
    payload = render_telegram(document_of(ISSUES[stem], GOLDEN_POLICY), max_messages=max_messages)
    validate(payload)
    golden = GOLDEN / name
    if os.environ.get("JIANBAO_REGENERATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(
            json.dumps(payload.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    assert payload.to_dict() == json.loads(golden.read_text(encoding="utf-8"))


def test_preview_shows_the_visible_text_of_every_message() -> None:
    payload = render_telegram(document_of(ISSUES["2020-07-02"], GOLDEN_POLICY))
    preview = payload.preview()
    assert "<a " not in preview
    assert "<b>" not in preview
    assert preview.count("──── 消息 ") == len(payload.messages) == 3
    assert "消息 1/3" in preview
    assert "【业界新闻】" in preview
    assert "【论文】（续）" in preview


# --- hostile content ---------------------------------------------------------------------------------

EMOJI = "😀"  # outside the BMP: two UTF-16 code units


def item(
    position: int,
    title: str,
    url: str | None,
    source: str | None = None,
    summary: str = "",
    tags: tuple[str, ...] = (),
) -> Item:
    return Item(position, title, url=url, source=source, tags=tags, summary=summary)


def hostile_issue() -> Issue:
    entries = (
        item(
            1,
            "<script>alert(1)</script> &amp; \"quotes\" 'single'",
            'https://example.com/?a=1&b="2"',
            "源<i>",
            '危险 <b>粗</b> & "引号" ' + EMOJI * 10_000,
            ("<x>", "&amp;"),
        ),
        item(
            2,
            "javascript link " + EMOJI,
            "javascript:alert(1)",
            summary="[click](javascript:alert(1)) and [ok](https://ok.example/a?b=1&c=2)",
        ),
        item(3, "empty link", "", "&lt;"),
        item(4, EMOJI * 9_000, "https://example.com/long-title", summary="x" * 10_000),
        item(5, "   ", "https://example.com/blank-title", summary="mailto link [mail](mailto:a@b.example)"),
    )
    many_links = " ".join(f"[l{n}](https://links.example/{n})" for n in range(300))
    return Issue(
        date=dt.date(2024, 1, 2),
        title='嵌入式AI简报 <2024> & "co"',
        headline="<p>标题</p>" + EMOJI * 5_000,
        tagline="<br>",
        lead="导读 **粗** [链接](https://lead.example) <script>x</script> " + "长" * 9_000,
        quick_news=(
            QuickNews("<u>快讯</u> & 1 < 2", "https://news.example/?x=1&y=2"),
            QuickNews(EMOJI * 6_000, None),
        ),
        sections=(
            Section("<业界新闻>", 1, entries),
            Section("空", 2, ()),
            Section("链接", 3, (item(1, "many links", "https://many.example", summary=many_links),)),
        ),
    )


@pytest.mark.parametrize("policy", list(POLICIES))
def test_hostile_content_stays_valid_and_escaped(policy: str) -> None:
    issue = hostile_issue()
    document = document_of(issue, POLICIES[policy])
    for max_messages in (None, 1, 2, 3):
        payload = render_telegram(document, max_messages=max_messages)
        parsed = validate(payload)
        raw = "".join(message.text for message in payload.messages)
        visible = "\n".join(html.visible for html in parsed)
        assert "<script>" not in raw
        assert "&lt;script&gt;" in raw
        assert '<script>alert(1)</script> &amp; "quotes"' in visible  # shown as text, escaped once
        assert "【<业界新闻>】" in visible
        assert "【空】" not in visible
        assert "javascript:" not in " ".join(hrefs(parsed))
        assert all(href.strip() for href in hrefs(parsed))
        assert primary_links(payload.document) - {news.url for news in document.quick_news} <= hrefs(parsed)
        check_sections(payload, parsed, document)
        if max_messages is not None:
            assert len(payload.messages) <= max_messages


def test_hostile_full_mode_shortens_only_what_cannot_fit_alone() -> None:
    document = document_of(hostile_issue(), POLICIES["tracked"])
    payload = render_telegram(document)
    validate(payload)
    items = payload.document.sections[0].items
    assert items[0].summary_text.endswith("…")
    assert EMOJI in items[0].summary_text
    assert items[3].summary == ()
    assert items[3].title.endswith("…")
    assert items[1] == document.sections[0].items[1]  # short items untouched
    assert payload.document.lead is not None
    assert payload.document.lead.endswith("…")
    # 300 links are 300 entities: the summary keeps as many as fit in one message.
    many = payload.document.sections[2].items[0]
    assert 50 < sum(run.url is not None for run in many.summary) < TELEGRAM_MAX_ENTITIES


def test_an_issue_with_hundreds_of_items_splits_into_valid_messages() -> None:
    items = tuple(
        item(n, f"条目 {n} <&>", f"https://example.com/{n}", "源", "摘要 " * 100) for n in range(1, 301)
    )
    issue = Issue(date=dt.date(2024, 1, 3), title="大", sections=(Section("多", 1, items),))
    document = document_of(issue, POLICIES["tracked"])
    payload = render_telegram(document)
    parsed = validate(payload)
    assert len(payload.messages) > 10
    assert primary_links(document) <= hrefs(parsed)
    check_sections(payload, parsed, document)
    one = render_telegram(document, max_messages=1)
    (parsed_one,) = validate(one)
    assert one.document.sections[0].omitted > 0
    check_sections(one, [parsed_one], document)


def test_too_many_sections_for_the_budget_do_not_fit() -> None:
    sections = tuple(
        Section(f"栏目{n}", n, (item(1, f"标题{n}", f"https://example.com/{n}"),)) for n in range(1, 61)
    )
    document = document_of(
        Issue(date=dt.date(2024, 1, 4), title="多栏目", sections=sections), POLICIES["tracked"]
    )
    with pytest.raises(DoesNotFit):  # 60 section headers and 60 links are over 100 entities
        render_telegram(document, max_messages=1)
    parsed = validate(render_telegram(document, max_messages=2))
    assert len(parsed) == 2
    assert sum(html.visible.count("【栏目") for html in parsed) == 60


# --- property: random budgets over the corpus and over merged, much larger issues ----------------------


def merged(stems: list[str], policy: str) -> IssueDocument:
    """Several issues as one: sections of the same name joined, so sections have dozens of items."""
    issues = [ISSUES[stem] for stem in stems]
    by_name: dict[str, list[Item]] = {}
    for issue in issues:
        for section in issue.sections:
            by_name.setdefault(section.name, []).extend(section.items)
    first = issues[0]
    big = dataclasses.replace(
        first,
        sections=tuple(
            Section(name, position, tuple(items)) for position, (name, items) in enumerate(by_name.items(), 1)
        ),
        quick_news=tuple(news for issue in issues for news in issue.quick_news),
    )
    return document_of(big, POLICIES[policy])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stems=st.lists(st.sampled_from(sorted(ISSUES)), min_size=1, max_size=8, unique=True),
    policy=st.sampled_from(sorted(POLICIES)),
    max_messages=st.integers(min_value=1, max_value=6),
)
def test_any_budget_fits_and_keeps_every_section(stems: list[str], policy: str, max_messages: int) -> None:
    document = merged(stems, policy) if len(stems) > 1 else DOCUMENTS[stems[0], policy]
    payload = render_telegram(document, max_messages=max_messages)
    parsed = validate(payload)
    assert len(payload.messages) <= max_messages
    check_sections(payload, parsed, document)
    assert primary_links(payload.document) - {news.url for news in document.quick_news} <= hrefs(parsed)
    full = render_telegram(document)
    if len(full.messages) <= max_messages:  # room for everything: nothing is trimmed
        assert payload == full
