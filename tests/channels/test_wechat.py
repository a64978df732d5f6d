"""The WeChat channel: draft/add articles (inline styles, links -> numbered references) and text messages.

The validators below check WeChat's rules on a payload; they run over every corpus issue, with a public URL
and click tracking on, and with no public URL at all.
Regenerate the goldens with JIANBAO_UPDATE_GOLDENS=1 (then read them before committing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.base import utf8_bytes, utf16_units
from channels.document import IssueDocument, build_document, summary_parser
from channels.fitting import DoesNotFit, apply_trim, more_line, non_empty, trim_plans
from channels.links import LinkPolicy, LinkRewriter, is_wechat_article
from channels.wechat.render import (
    WECHAT_AUTHOR_MAX,
    WECHAT_CONTENT_MAX_BYTES,
    WECHAT_CONTENT_MAX_CHARS,
    WECHAT_DIGEST_MAX,
    WECHAT_SOURCE_URL_MAX_BYTES,
    WECHAT_TEXT_MAX_BYTES,
    WECHAT_TITLE_MAX,
    WeChatArticle,
    WeChatPayload,
    article_content,
    article_text,
    fit_article,
    fit_text,
    render_wechat,
    text_message,
)
from content.demo import demo_issue_dir
from content.model import Issue, Item, QuickNews, Section
from content.parser import parse_issue
from content.source import read_issue_file

CORPUS = sorted(demo_issue_dir().glob("*.md"))
STEMS = [path.stem for path in CORPUS]
PUBLIC_URL = "https://jianbao.example"
GOLDEN_DIR = Path(__file__).parent / "golden"
POLICIES = {
    "tracked": LinkPolicy("wechat", public_url=PUBLIC_URL, tracking=True, secret=b"test secret"),
    "no-public-url": LinkPolicy("wechat"),
}
_MD = summary_parser()


@functools.cache
def corpus_issue(stem: str) -> Issue:
    return parse_issue(read_issue_file(demo_issue_dir() / f"{stem}.md"))


def make_document(issue: Issue, policy: LinkPolicy) -> IssueDocument:
    return build_document(issue, LinkRewriter(policy, issue.date), _MD)


@functools.cache
def corpus_document(stem: str, policy_name: str) -> IssueDocument:
    return make_document(corpus_issue(stem), POLICIES[policy_name])


@functools.cache
def corpus_payload(stem: str, policy_name: str) -> WeChatPayload:
    return render_wechat(corpus_document(stem, policy_name))


# -- reading an article back ----------------------------------------------------------------------------

ALLOWED_TAGS = frozenset({"section", "p", "h2", "h3", "span", "a", "sup", "br"})
BLOCK_TAGS = frozenset({"section", "p", "h2", "h3"})
VOID_TAGS = frozenset({"br"})
# What may sit inside what: blocks hold blocks (no loose text); paragraphs hold inline pieces only.
CHILDREN = {
    "#root": {"section"},
    "section": {"section", "p", "h2", "h3"},
    "p": {"span", "a", "sup", "br", "#text"},
    "h2": {"#text"},
    "h3": {"#text"},
    "span": {"#text"},
    "a": {"#text"},
    "sup": {"#text"},
}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text for child in self.children)

    @property
    def elements(self) -> list[Node]:
        return [child for child in self.children if isinstance(child, Node)]

    def walk(self) -> list[Node]:
        found = [self]
        for child in self.elements:
            found += child.walk()
        return found


class TreeBuilder(HTMLParser):
    """A strict reading of an article body: unknown tags, attributes or bad nesting fail the test."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, f"tag <{tag}> is not allowed"
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)), f"repeated attribute in <{tag}>"
        for name, value in attrs:
            assert name == "style" or (tag == "a" and name == "href"), f"attribute {name} on <{tag}>"
            assert value, f"empty {name} on <{tag}>"
        if tag == "a":
            assert "href" in names, "<a> without href"
        parent = self.stack[-1]
        assert tag in CHILDREN[parent.tag], f"<{tag}> inside <{parent.tag}>"
        node = Node(tag, {name: value or "" for name, value in attrs})
        parent.children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in VOID_TAGS, f"<{tag}/> is not a void tag"
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert tag not in VOID_TAGS, f"</{tag}>"
        assert len(self.stack) > 1, f"</{tag}> closes nothing"
        assert self.stack[-1].tag == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        parent = self.stack[-1]
        if parent.tag in BLOCK_TAGS - {"p", "h2", "h3"} or parent.tag == "#root":
            assert not data.strip(), f"loose text {data[:40]!r} in <{parent.tag}>"
            return
        assert "#text" in CHILDREN[parent.tag], f"text in <{parent.tag}>"
        parent.children.append(data)

    def handle_comment(self, data: str) -> None:
        raise AssertionError("comment in an article")

    def handle_decl(self, decl: str) -> None:
        raise AssertionError("declaration in an article")

    def handle_pi(self, data: str) -> None:
        raise AssertionError("processing instruction in an article")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError("unknown declaration in an article")


def parse_article(content: str) -> Node:
    builder = TreeBuilder()
    builder.feed(content)
    builder.close()
    assert builder.stack == [builder.root], "unclosed tags"
    return builder.root


REFERENCE_LINE = re.compile(r"\[(\d+)\] (?:(.*): )?(\S+)")
SUP = re.compile(r"\[(\d+)\]")


@dataclass
class ArticleReading:
    root: Node
    references: dict[int, tuple[str | None, str]]  # number -> (label, url)
    sups: list[int]  # reference numbers in the body, in order
    hrefs: list[str]

    def reachable(self) -> set[str]:
        return set(self.hrefs) | {url for _, url in self.references.values()}

    def sections(self) -> list[tuple[str, list[Node], Node | None]]:
        """(name, item nodes, "还有 N 条" paragraph) of each section block."""
        blocks = []
        for block in self.root.elements[0].elements:
            inner = block.elements
            if block.tag == "section" and inner and inner[0].tag == "h2":
                items = [node for node in inner[1:] if node.tag == "section"]
                more = [node for node in inner[1:] if node.tag == "p"]
                assert len(more) <= 1
                assert inner[1 : 1 + len(items)] == items
                blocks.append((inner[0].text, items, more[0] if more else None))
        return blocks


def read_article(content: str) -> ArticleReading:
    root = parse_article(content)
    assert [node.tag for node in root.elements] == ["section"], "one root <section>"
    blocks = root.elements[0].elements
    reference_blocks = [block for block in blocks if block.elements and block.elements[0].text == "引用链接"]
    references: dict[int, tuple[str | None, str]] = {}
    order: list[int] = []
    if reference_blocks:
        assert reference_blocks == [blocks[-1]], "the 引用链接 list ends the article"
        heading, listing = reference_blocks[0].elements
        assert heading.tag == "h3"
        assert listing.tag == "p"
        lines, line = [], ""
        for child in listing.children:
            if isinstance(child, Node):
                assert child.tag == "br"
                lines.append(line)
                line = ""
            else:
                line += child
        lines.append(line)
        for text in lines:
            match = REFERENCE_LINE.fullmatch(text)
            assert match, f"bad reference line {text!r}"
            number = int(match.group(1))
            assert number not in references, f"reference [{number}] listed twice"
            assert re.match(r"(https?|mailto):", match.group(3)), text
            references[number] = (match.group(2), match.group(3))
            order.append(number)
    assert order == list(range(1, len(order) + 1)), f"references not numbered 1..n: {order}"
    body = [node for block in blocks if block not in reference_blocks for node in block.walk()]
    sups = []
    for node in body:
        if node.tag == "sup":
            match = SUP.fullmatch(node.text)
            assert match, f"<sup>{node.text}</sup>"
            sups.append(int(match.group(1)))
    hrefs = [node.attrs["href"] for node in body if node.tag == "a"]
    return ArticleReading(root, references, sups, hrefs)


def validate_article(article: WeChatArticle) -> ArticleReading:
    """WeChat's rules for a draft/add article."""
    content = article.content
    assert 0 < len(content) < WECHAT_CONTENT_MAX_CHARS
    assert utf16_units(content) < WECHAT_CONTENT_MAX_CHARS
    assert utf8_bytes(content) < WECHAT_CONTENT_MAX_BYTES
    assert 0 < len(article.title) <= WECHAT_TITLE_MAX
    assert 0 < len(article.author) <= WECHAT_AUTHOR_MAX
    assert 0 < len(article.digest) <= WECHAT_DIGEST_MAX
    assert utf8_bytes(article.content_source_url) <= WECHAT_SOURCE_URL_MAX_BYTES
    assert article.content_source_url == "" or re.match(r"https?://", article.content_source_url)
    for tag in re.findall(r"<[^<>]*>", content.lower()):  # (issue text is escaped: not a tag)
        assert not tag.startswith(("<style", "<script", "</style", "</script")), tag
        assert not re.search(r"\s(class|id|on\w+)\s*=", tag), f"attribute in {tag}"
    assert "\n" not in content
    outside_tags = re.sub(r"<[^<>]*>", "", content)
    assert not re.search("[<>]", outside_tags), "a bracket outside a tag"
    reading = read_article(content)
    for href in reading.hrefs:
        assert is_wechat_article(href), f"a link to {href} in an article body"
    assert set(reading.sups) == set(reading.references), "every <sup>[n]</sup> has one entry and back"
    first_seen = list(dict.fromkeys(reading.sups))
    assert first_seen == sorted(first_seen), "numbers follow the order of first appearance"
    for number, (_, url) in reading.references.items():
        assert not is_wechat_article(url), f"[{number}] {url} could have stayed a link"
    return reading


TEXT_TAG = re.compile(r"<[^<>]*>")
TEXT_OPEN = re.compile(r'<a href="https?://[^"\s<>]+">')


def validate_text(text: str) -> None:
    """A passive reply / customer-service text: size, and only balanced <a href="http(s)..."> tags."""
    assert text.strip()
    assert utf8_bytes(text) <= WECHAT_TEXT_MAX_BYTES
    open_link = False
    for tag in TEXT_TAG.findall(text):
        if tag == "</a>":
            assert open_link, "</a> without <a>"
            open_link = False
        else:
            assert TEXT_OPEN.fullmatch(tag), f"tag {tag!r} in a text message"
            assert not open_link, "nested <a>"
            open_link = True
    assert not open_link, "unclosed <a>"
    rest = TEXT_TAG.sub("", text)
    assert not re.search("[<>]", rest), "a bracket outside a tag"


def validate_payload(payload: WeChatPayload) -> ArticleReading:
    reading = validate_article(payload.article)
    validate_text(payload.text)
    data = payload.to_dict()
    assert list(data) == ["channel", "article", "text", "links"]
    assert data["channel"] == "wechat"
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    shown = reading.reachable() | set(text_hrefs(payload.text))
    for link in payload.links:
        assert link.rendered in shown, f"listed link {link.rendered} is not in the payload"
    assert payload.preview().strip()
    return reading


def text_hrefs(text: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)">', text)


@dataclass
class TextSection:
    name: str
    items: list[str] = field(default_factory=list)
    more: str | None = None


def read_text(text: str) -> list[TextSection]:
    sections: list[TextSection] = []
    for line in text.split("\n"):
        header = re.fullmatch(r"【(.+)】", line)
        if header:
            sections.append(TextSection(header.group(1)))
        elif sections and re.match(r"\d+\. ", line):
            assert sections[-1].more is None, "an item after 还有 N 条"
            sections[-1].items.append(line)
        elif sections and TEXT_TAG.sub("", line).startswith("还有 "):
            sections[-1].more = line
    return sections


# -- (1) the validators over the whole corpus -------------------------------------------------------------


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("stem", STEMS)
def test_corpus_payload_is_valid(stem: str, policy_name: str) -> None:
    payload = corpus_payload(stem, policy_name)
    document = corpus_document(stem, policy_name)
    validate_payload(payload)
    if document.issue_url:
        assert payload.article.content_source_url == document.issue_url
        assert payload.text.endswith(f'完整一期：<a href="{document.issue_url}">阅读全文</a>')
    else:
        assert payload.article.content_source_url == ""
        assert "阅读原文" not in payload.article.content
        assert PUBLIC_URL not in payload.text
    if POLICIES[policy_name].tracks:
        assert {link.rendered for link in payload.links} <= {link.rendered for link in document.links}


# -- (2) reachability and exact omitted counts --------------------------------------------------------------


def squash(text: str) -> str:
    return " ".join(text.split())


def check_article_sections(reading: ArticleReading, original: IssueDocument, trimmed: IssueDocument) -> None:
    expected = non_empty(original.sections)
    shown = reading.sections()
    assert [name for name, _, _ in shown] == [section.name for section in expected]
    by_name = {section.name: section for section in trimmed.sections}
    for (name, items, more), section in zip(shown, expected, strict=True):
        kept = by_name[name]
        assert len(items) == len(kept.items) >= 1, f"{name}: the first item stays"
        assert squash(kept.items[0].title) in squash(items[0].text)
        assert len(items) + kept.omitted == len(section.items), f"{name}: omitted count"
        if kept.omitted:
            assert more is not None
            sups = [node for node in more.elements if node.tag == "sup"]
            if original.issue_url:
                assert more.text == f"{more_line(kept.omitted)}{sups[0].text}"
                match = SUP.fullmatch(sups[0].text)
                assert match
                assert reading.references[int(match.group(1))][1] == original.section_url(section)
            else:
                assert more.text == more_line(kept.omitted)
                assert not sups
        else:
            assert more is None


def check_text_sections(text: str, original: IssueDocument, trimmed: IssueDocument) -> None:
    expected = non_empty(original.sections)
    shown = read_text(text)
    assert [section.name for section in shown] == [section.name for section in expected]
    by_name = {section.name: section for section in trimmed.sections}
    for reading, section in zip(shown, expected, strict=True):
        kept = by_name[reading.name]
        assert len(reading.items) == len(kept.items) >= 1
        title = squash(kept.items[0].title).replace("<", "＜").replace(">", "＞")
        assert title in squash(reading.items[0])
        assert len(reading.items) + kept.omitted == len(section.items)
        assert [line.split(". ", 1)[0] for line in reading.items] == [
            str(n) for n in range(1, len(reading.items) + 1)
        ]
        if kept.omitted:
            url = original.section_url(section)
            line = more_line(kept.omitted)
            assert reading.more == (f'<a href="{url}">{line}</a>' if url else line)
        else:
            assert reading.more is None


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("stem", STEMS)
def test_every_primary_link_is_reachable_and_cuts_are_counted(stem: str, policy_name: str) -> None:
    original = corpus_document(stem, policy_name)
    plain = original
    payload = corpus_payload(stem, policy_name)
    article, article_document = fit_article(plain)
    text, text_document = fit_text(plain)
    assert article == payload.article
    assert text == payload.text
    reading = validate_article(article)
    reachable = reading.reachable()
    check_article_sections(reading, original, article_document)
    check_text_sections(text, original, text_document)
    for kept, section in zip(article_document.sections, original.sections, strict=True):
        for item in section.items[: len(kept.items)]:
            if item.url:
                assert item.url in reachable, f"{item.title}: {item.url} unreachable"
        if kept.omitted and original.issue_url:
            assert original.section_url(section) in reachable
    for news in article_document.quick_news:
        if news.url:
            assert news.url in reachable
    hrefs = set(text_hrefs(text))
    for kept in text_document.sections:
        for item in kept.items:
            if item.url and item.url.startswith("http"):
                assert item.url in hrefs


# -- (3) goldens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["2020-07-02", "2021-08-01"])
def test_golden(stem: str) -> None:
    policy = LinkPolicy("wechat", public_url=PUBLIC_URL, tracking=False)
    payload = render_wechat(make_document(corpus_issue(stem), policy))
    path = GOLDEN_DIR / f"wechat-{stem}.json"
    rendered = json.dumps(payload.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if os.environ.get("JIANBAO_UPDATE_GOLDENS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == payload.to_dict()


# -- (4) hostile content --------------------------------------------------------------------------------------

EMOJI = "😀"  # outside the BMP: a surrogate pair in UTF-16
LONG = "长" * 5_000 + "x" * 5_000


def hostile_issue() -> Issue:
    return Issue(
        date=dt.date(2024, 1, 2),
        title="嵌入式AI简报 (2024-01-02)",
        headline=f'<script>alert("h")</script> &amp; {EMOJI}',
        tagline='<b>&amp;</b> "quoted"',
        lead=f"导读 <script>alert(1)</script> [坏链接](javascript:alert(1)) **粗体** &amp; {EMOJI}",
        quick_news=(
            QuickNews(text='<img src=x onerror="alert(1)">', url="javascript:alert(1)"),
            QuickNews(text=f"同一链接 {EMOJI}", url="https://example.com/same"),
        ),
        sections=(
            Section(
                name='新闻 <b onclick="x">',
                position=1,
                items=(
                    Item(
                        position=1,
                        title=f'<script>alert("t")</script> &amp; "quotes" {EMOJI}',
                        url='https://example.com/a?x=1&y="2"<script>',
                        source='<i onmouseover="x">来源</i>',
                        tags=("<tag>", "&amp;"),
                        summary=LONG,
                    ),
                    Item(
                        position=2,
                        title="javascript: link",
                        url="javascript:alert(1)",
                        summary="[click](javascript:alert(2)) and [empty]() and "
                        "[wx](https://mp.weixin.qq.com/s/abc?x=1&y=2) and [same](https://example.com/same)",
                    ),
                    Item(position=3, title="empty link", url="", summary="<script>alert(3)</script>"),
                    Item(position=4, title=f"another {EMOJI}", url="https://example.com/b", summary=LONG),
                ),
            ),
            Section(name="空栏目", position=2),
            Section(
                name="论文",
                position=3,
                items=(Item(position=1, title="x" * 300, url="https://example.com/c", summary=LONG),),
            ),
        ),
    )


@pytest.mark.parametrize("policy_name", list(POLICIES))
def test_hostile_content_stays_valid_and_escaped(policy_name: str) -> None:
    original = make_document(hostile_issue(), POLICIES[policy_name])
    payload = render_wechat(original)
    reading = validate_payload(payload)
    content, text = payload.article.content, payload.text
    for rendered in (content, text):
        assert not re.search(r"<(script|b|i|img|tag)[\s>]", rendered)
        assert "javascript:" not in "".join(re.findall(r'href="[^"]*"', rendered))
        assert EMOJI in rendered
    assert "&lt;script&gt;" in content
    assert "&amp;amp;" in content
    assert "&quot;" not in text
    assert "＜script＞" in text
    assert "&amp;" in text
    assert "空栏目" not in content
    assert "空栏目" not in text
    check_article_sections(reading, original, fit_article(original)[1])
    assert utf16_units(content) < WECHAT_CONTENT_MAX_CHARS < len(LONG) * 3
    if not POLICIES[policy_name].tracks:
        url = 'https://example.com/a?x=1&y="2"<script>'
        assert reading.references[1] == ('<script>alert("t")</script> &amp; "quot…', url)
        assert "https://example.com/a?x=1&amp;y=&#34;2&#34;&lt;script&gt;" in content
        assert "https://example.com/a?x=1&y=%222%22%3Cscript%3E" in text
        assert " and empty and <a " in content
        assert "</a> and same<sup>" in content
    # title and digest are plain-text fields of the API (not HTML)
    assert payload.article.title == "嵌入式AI简报 (2024-01-02)：<script>al…"
    assert len(payload.article.title) == WECHAT_TITLE_MAX
    # the lead's Markdown is read (HTML dropped, entities decoded); javascript: is no link to Markdown
    assert payload.article.digest == f"导读 alert(1) [坏链接](javascript:alert(1)) 粗体 & {EMOJI}"


def test_same_url_same_number_and_wechat_links_stay_links() -> None:
    issue = dataclasses.replace(
        hostile_issue(),
        sections=(
            Section(
                name="新闻",
                position=1,
                items=(
                    Item(position=1, title="one", url="https://example.com/same", summary="s"),
                    Item(
                        position=2,
                        title="two",
                        url="https://mp.weixin.qq.com/s/two",
                        summary="[wx](https://mp.weixin.qq.com/s/abc?x=1&y=2) and [again](https://example.com/same)"
                        " and [other](https://example.com/other)",
                    ),
                ),
            ),
        ),
    )
    document = make_document(issue, POLICIES["no-public-url"])
    content = article_content(document)
    reading = read_article(content)
    assert reading.references == {
        1: ("同一链接 😀", "https://example.com/same"),
        2: ("other", "https://example.com/other"),
    }
    assert reading.sups == [1, 1, 1, 2]  # quick news, item one, the summary link, other
    assert reading.hrefs == ["https://mp.weixin.qq.com/s/two", "https://mp.weixin.qq.com/s/abc?x=1&y=2"]
    assert 'href="https://mp.weixin.qq.com/s/abc?x=1&amp;y=2"' in content
    assert "one<sup>[1]</sup>" in content
    assert "again<sup>[1]</sup>" in content


def test_author_is_checked() -> None:
    document = corpus_document("2021-08-01", "tracked")
    assert render_wechat(document, author="编辑部").article.author == "编辑部"
    with pytest.raises(ValueError, match="author"):
        render_wechat(document, author="长" * (WECHAT_AUTHOR_MAX + 1))


def test_headline_goes_into_the_title_and_digest_falls_back() -> None:
    article = corpus_payload("2021-01-05", "tracked").article
    assert article.title == "嵌入式AI简报 (2021-01-05)：骁龙480/微信AI…"
    document = corpus_document("2021-08-01", "tracked")
    assert document.lead is None
    assert fit_article(document)[0].digest == document.tagline
    bare = dataclasses.replace(document, tagline=None)
    first_titles = [section.items[0].title for section in bare.sections if section.items]
    assert fit_article(bare)[0].digest.startswith("；".join(first_titles)[: WECHAT_DIGEST_MAX - 1])


def test_lead_markdown_becomes_plain_text() -> None:
    document = corpus_document("2020-02-16", "tracked")
    assert document.lead is not None
    assert "](" not in document.lead
    assert "部署机器学习" in document.lead
    assert "导读" in article_text(fit_article(document)[0].content)


def test_a_tiny_budget_that_cannot_fit_raises() -> None:
    document = corpus_document("2020-07-02", "tracked")
    with pytest.raises(DoesNotFit):
        fit_text(document, max_bytes=100)
    with pytest.raises(DoesNotFit):
        fit_article(document, max_chars=500)


# -- (5) properties over random budgets -----------------------------------------------------------------------


def size_range(document: IssueDocument, measure: Callable[[IssueDocument], int]) -> tuple[int, int]:
    smallest = measure(apply_trim(document, trim_plans(document)[-1]))
    return smallest, measure(document)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_article_fits_any_budget(data: st.DataObject) -> None:
    stem = data.draw(st.sampled_from(STEMS))
    policy_name = data.draw(st.sampled_from(list(POLICIES)))
    original = corpus_document(stem, policy_name)
    plain = original
    smallest, largest = size_range(plain, lambda doc: utf16_units(article_content(doc)))
    budget = data.draw(st.integers(smallest + 1, largest + 1))
    article, trimmed = fit_article(plain, max_chars=budget)
    assert utf16_units(article.content) < budget
    reading = read_article(article.content)
    check_article_sections(reading, original, trimmed)
    assert set(reading.sups) == set(reading.references)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_text_fits_any_budget(data: st.DataObject) -> None:
    stem = data.draw(st.sampled_from(STEMS))
    policy_name = data.draw(st.sampled_from(list(POLICIES)))
    original = corpus_document(stem, policy_name)
    smallest, largest = size_range(original, lambda doc: utf8_bytes(text_message(doc)))
    budget = data.draw(st.integers(smallest, largest))
    text, trimmed = fit_text(original, max_bytes=budget)
    assert utf8_bytes(text) <= budget
    check_text_sections(text, original, trimmed)
