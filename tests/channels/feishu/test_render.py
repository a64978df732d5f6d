"""Feishu: every payload, rendered through the channel (channels/feishu/channel.py), checked against the
custom bot's rules by a validator written here.

The validator reads each body independently of the module's helpers (sources: 自定义机器人使用指南,
https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot):
- shape: {"msg_type": "post", "content": {"post": {"zh_cn": {"title", "content"}}}}, paragraphs of text
  {tag, text} and a {tag, text, href} nodes only, every href an http(s) URL ("发送富文本消息");
- size: the request body at most 20,000 bytes ("请求体的数据大小不能超过 20 KB", its smaller reading),
  measured on the compact UTF-8 JSON with the longest "timestamp" and "sign" a signed bot adds;
- the fake platform's own checks (tests/fakes/feishu_api.check_message) pass too.

Goldens: regenerate with JIANBAO_REGENERATE_GOLDEN=1 and read the diff before committing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from channels.document import IssueDocument, SectionBlock, build_document, summary_parser
from channels.feishu import (
    FEISHU_BODY_BUDGET,
    FEISHU_MAX_BODY_BYTES,
    FeishuPayload,
    body_bytes,
)
from channels.feishu.channel import FEISHU, FeishuSettings
from channels.fitting import DoesNotFit, non_empty
from channels.links import LinkPolicy, LinkRewriter
from content.model import Issue, Item, QuickNews, Section
from content.parser import parse_issue
from content.source import read_issue_file
from tests.content.corpus import corpus_files
from tests.fakes.feishu_api import check_message

FILES = corpus_files()
GOLDEN = Path(__file__).parent / "golden"
MD = summary_parser()
SECRET = b"feishu-test-secret"

POLICIES = {
    "tracked": LinkPolicy("feishu", public_url="https://jianbao.example", tracking=True, secret=SECRET),
    "no-public-url": LinkPolicy("feishu"),
}
GOLDEN_POLICY = LinkPolicy("feishu", public_url="https://jianbao.example", tracking=False)

# --- the validator ---------------------------------------------------------------------------------

MAX_BODY = 20_000  # 自定义机器人使用指南: "请求体的数据大小不能超过 20 KB"
SIGNED = {"timestamp": "9999999999", "sign": "A" * 44}  # the longest a signed bot adds until 2286
BLANK = [{"tag": "text", "text": ""}]


def wire_bytes(body: dict[str, Any], *, signed: bool = True) -> int:
    sent = {**SIGNED, **body} if signed else body
    return len(json.dumps(sent, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@dataclasses.dataclass
class Parsed:
    title: str
    lines: list[str]
    paragraphs: list[list[dict[str, str]]]
    links: list[tuple[str, str]]  # (href, text)


def render(document: IssueDocument, max_messages: int | None = None) -> FeishuPayload:
    """The payload as a broadcast gets it, through the channel; what the channel says of it checked too."""
    rendered = FEISHU.render(document, FeishuSettings(), max_messages=max_messages)
    payload = rendered.payload
    assert isinstance(payload, FeishuPayload)
    assert rendered.to_dict() == payload.to_dict()
    assert rendered.links == payload.links
    assert rendered.parts == len(payload.messages)
    assert rendered.sizes == {
        "messages": len(payload.messages),
        "bytes": [wire_bytes(body, signed=False) for body in payload.messages],
    }
    return payload


def validate(payload: FeishuPayload) -> list[Parsed]:
    data: dict[str, Any] = payload.to_dict()
    json.dumps(data)  # the JSON contract is JSON
    assert set(data) == {"channel", "messages", "links"}
    assert data["channel"] == "feishu"
    messages = data["messages"]
    assert isinstance(messages, list)
    assert messages
    assert messages == list(payload.messages)
    parsed = []
    for body in messages:
        assert set(body) == {"msg_type", "content"}, "timestamp and sign are added at send time"
        assert body["msg_type"] == "post"
        assert set(body["content"]) == {"post"}
        assert set(body["content"]["post"]) == {"zh_cn"}
        post = body["content"]["post"]["zh_cn"]
        assert set(post) == {"title", "content"}
        assert isinstance(post["title"], str)
        assert post["title"].strip()
        paragraphs = post["content"]
        assert isinstance(paragraphs, list)
        assert paragraphs
        links = []
        for paragraph in paragraphs:
            assert isinstance(paragraph, list)
            assert paragraph, "an empty paragraph: a blank line is an empty text node"
            for node in paragraph:
                assert isinstance(node.get("text"), str)
                if node["tag"] == "text":
                    assert set(node) == {"tag", "text"}
                else:
                    assert node["tag"] == "a"
                    assert set(node) == {"tag", "text", "href"}
                    parts = urlsplit(node["href"])
                    assert parts.scheme in ("http", "https")
                    assert parts.netloc
                    assert node["text"].strip(), "a link with no visible text"
                    links.append((node["href"], node["text"]))
        lines = ["".join(node["text"] for node in paragraph) for paragraph in paragraphs]
        assert any(line.strip() for line in lines)
        assert wire_bytes(body) <= MAX_BODY
        assert body_bytes(body) == wire_bytes(body, signed=False)  # the module counts what is sent
        check_message(body)  # the fake platform accepts it
        parsed.append(Parsed(post["title"], lines, paragraphs, links))
    for link in data["links"]:
        assert link["original"]
        assert link["rendered"].startswith(("http://", "https://", "mailto:"))
    return parsed


def test_the_validator_measures_the_signed_body() -> None:
    body = {"msg_type": "post", "content": {"post": {"zh_cn": {"title": "简", "content": [BLANK]}}}}
    unsigned = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    assert wire_bytes(body, signed=False) == unsigned
    assert wire_bytes(body) == unsigned + len(',"timestamp":"9999999999","sign":""') + 44
    assert MAX_BODY - (wire_bytes(body) - unsigned) == FEISHU_BODY_BUDGET
    assert FEISHU_MAX_BODY_BYTES == MAX_BODY


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


def section_lines(parsed: list[Parsed], sections: tuple[SectionBlock, ...]) -> dict[str, list[str]]:
    """Each shown section's lines, from its header to the next section (continuations joined)."""
    headers = {f"【{section.name}】": section.name for section in sections}
    headers |= {f"【{section.name}】（续）": section.name for section in sections}
    found: dict[str, list[str]] = {}
    current: str | None = None
    for message in parsed:
        for line in message.lines:
            if line in headers:
                current = headers[line]
                found.setdefault(current, [])
            elif current is not None:
                found[current].append(line)
    return found


def check_sections(payload: FeishuPayload, parsed: list[Parsed], original: IssueDocument) -> None:
    """Every non-empty section is named, keeps its first item, and says exactly how many were cut."""
    shown = non_empty(payload.document.sections)
    assert [section.name for section in shown] == [section.name for section in non_empty(original.sections)]
    lines = section_lines(parsed, shown)
    assert list(lines) == [section.name for section in shown]
    links = {href: text for message in parsed for href, text in message.links}
    for section, before in zip(shown, non_empty(original.sections), strict=True):
        assert len(section.items) + section.omitted == len(before.items) + before.omitted
        assert section.items, "a section keeps its first item"
        body = [line for line in lines[section.name] if line]
        for number, item in enumerate(section.items, 1):
            # (a word joiner defuses "<at" in shown text: see the hostile tests)
            shown_title = item.title.strip()
            assert any(
                line.startswith(f"{number}. ") and shown_title in line.replace("\u2060", "") for line in body
            ), (
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


def hrefs(parsed: list[Parsed]) -> set[str]:
    return {href for message in parsed for href, _ in message.links}


def check_titles(payload: FeishuPayload, parsed: list[Parsed]) -> None:
    first = payload.document.title
    assert [message.title for message in parsed] == [first] + [f"{first}（续）"] * (len(parsed) - 1)


def check_splits(parsed: list[Parsed]) -> None:
    """Splits fall between blocks: a later message opens on a block, never inside an item."""
    for message in parsed[1:]:
        assert message.lines[0].startswith(("【", "导读", "热身小新闻", "• ")), message.lines[0]
        assert message.paragraphs[0] != BLANK


# --- the corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_every_issue_renders_valid_messages(path: Path, policy: str) -> None:
    document = DOCUMENTS[path.stem, policy]
    full = render(document)
    parsed = validate(full)
    assert full.document == document, "the full payload trims nothing from a real issue"
    assert primary_links(document) <= hrefs(parsed)
    check_sections(full, parsed, document)
    check_titles(full, parsed)
    check_splits(parsed)
    if policy == "tracked":
        assert all(href.startswith("https://jianbao.example/") for href in hrefs(parsed))
    else:
        assert not any("jianbao.example" in href for href in hrefs(parsed))
    assert {link.rendered for link in full.links} >= hrefs(parsed) - {
        document.issue_url,
        *(document.section_url(section) for section in document.sections),
    }

    for max_messages in (1, 2, 3):
        some = render(document, max_messages=max_messages)
        parsed_some = validate(some)
        assert len(parsed_some) <= max_messages
        check_sections(some, parsed_some, document)
        check_titles(some, parsed_some)
        check_splits(parsed_some)
        quick = {news.url for news in document.quick_news}
        assert primary_links(some.document) - quick <= hrefs(parsed_some)
        if len(full.messages) <= max_messages:  # room for everything: nothing is trimmed
            assert some == full


def test_full_mode_uses_as_few_messages_as_the_blocks_allow() -> None:
    """Greedy packing: the first block of each message would not have fitted in the one before."""
    split = 0
    for (stem, policy), document in DOCUMENTS.items():
        full = render(document)
        for before, after in itertools.pairwise(full.messages):
            paragraphs = after["content"]["post"]["zh_cn"]["content"]
            first_block = list(itertools.takewhile(lambda paragraph: paragraph != BLANK, paragraphs))
            if first_block[0][0]["text"].endswith("】（续）"):
                first_block = first_block[1:]
            merged = json.loads(json.dumps(before))
            merged["content"]["post"]["zh_cn"]["content"] += [BLANK, *first_block]
            assert wire_bytes(merged) > MAX_BODY, (stem, policy)
            split += 1
        assert len(full.messages) <= 2
    assert split > 10  # the corpus does exercise splitting


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        render(DOCUMENTS["2020-07-02", "tracked"], max_messages=0)


def test_rendering_is_deterministic() -> None:
    document = DOCUMENTS["2021-07-18", "tracked"]
    assert render(document).to_dict() == render(document).to_dict()
    assert render(document, max_messages=1) == render(document, max_messages=1)


# --- goldens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "max_messages", "name"),
    [
        ("2020-07-02", None, "feishu-2020-07-02.json"),
        ("2020-07-02", 1, "feishu-2020-07-02-one-message.json"),
    ],
)
def test_golden_payload(stem: str, max_messages: int | None, name: str) -> None:
    payload = render(document_of(ISSUES[stem], GOLDEN_POLICY), max_messages=max_messages)
    validate(payload)
    golden = GOLDEN / name
    if os.environ.get("JIANBAO_REGENERATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(
            json.dumps(payload.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    assert payload.to_dict() == json.loads(golden.read_text(encoding="utf-8"))


def test_preview_shows_the_visible_text_of_every_message() -> None:
    payload = render(document_of(ISSUES["2020-07-02"], GOLDEN_POLICY))
    preview = payload.preview()
    assert '"tag"' not in preview
    assert "https://" not in preview
    assert preview.count("──── 消息 ") == len(payload.messages) == 2
    assert "消息 1/2" in preview
    assert "【标题】嵌入式AI简报 (2020-07-02)" in preview
    assert "【标题】嵌入式AI简报 (2020-07-02)（续）" in preview
    assert "【业界新闻】" in preview
    assert f"/{FEISHU_BODY_BUDGET} 字节" in preview


# --- boundaries --------------------------------------------------------------------------------------


def two_items(summary_chars: int) -> IssueDocument:
    """One section of two items, the second with a summary of `summary_chars` one-byte characters."""
    items = (
        Item(1, "第一条", url="https://example.com/1", source="源", tags=(), summary="摘要"),
        Item(2, "第二条", url="https://example.com/2", source="源", tags=(), summary="x" * summary_chars),
    )
    issue = Issue(date=dt.date(2024, 2, 1), title="边界", sections=(Section("栏目", 1, items),))
    return document_of(issue, POLICIES["no-public-url"])


def exact_fit() -> int:
    """The summary length that makes the one message exactly FEISHU_BODY_BUDGET bytes."""
    one = body_bytes(render(two_items(1)).messages[0])  # each further "x" is one more byte
    return FEISHU_BODY_BUDGET - one + 1


def test_a_body_at_the_budget_is_one_message_and_a_byte_more_splits_between_items() -> None:
    length = exact_fit()
    at_limit = render(two_items(length))
    (body,) = at_limit.messages
    assert body_bytes(body) == FEISHU_BODY_BUDGET
    assert wire_bytes(body) <= MAX_BODY
    validate(at_limit)

    over = render(two_items(length + 1))
    first, second = validate(over)
    assert first.lines[-1] == "摘要"  # the first item whole
    assert second.lines[0] == "【栏目】（续）"
    assert second.lines[1].startswith("2. 第二条")
    assert second.lines[2] == "x" * (length + 1)  # the second item whole, not cut

    # One message: summaries are shortened before any item is dropped (channels/fitting.py).
    digest = render(two_items(length + 1), max_messages=1)
    (only,) = validate(digest)
    assert only.lines[-1] == "x" * 399 + "…"
    assert digest.document.sections[0].omitted == 0


def test_an_item_too_big_for_any_message_is_shortened_not_split() -> None:
    payload = render(two_items(30_000))
    parsed = validate(payload)
    assert len(parsed) == 2
    summary = payload.document.sections[0].items[1].summary_text
    assert summary.endswith("…")
    assert 15_000 < len(summary) < 20_000


# --- hostile content ---------------------------------------------------------------------------------

EMOJI = "😀"  # four bytes of UTF-8


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
            '<at user_id="all">所有人</at> "quotes" \\ back\u2028slash',
            'https://example.com/?a=1&b="2"',
            '源<at user_id="all">',
            '危险 <b>粗</b> & "引号" ' + EMOJI * 10_000,
            ("<at>", "&amp;"),
        ),
        item(
            2,
            "javascript link " + EMOJI,
            "javascript:alert(1)",
            summary="[click](javascript:alert(1)) and [ok](https://ok.example/a?b=1&c=2)",
        ),
        item(3, "empty link", "", "&lt;"),
        item(4, EMOJI * 9_000, "https://example.com/long-title", summary="x" * 30_000),
        item(5, "   ", "https://example.com/blank-title", summary="mailto link [mail](mailto:a@b.example)"),
        item(6, "huge link", "https://example.com/" + "p" * 25_000, summary="short"),
        item(7, "code", "https://example.com/code", summary="```\nline one\n\nline two\n```"),
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
def test_hostile_content_stays_valid(policy: str) -> None:
    document = document_of(hostile_issue(), POLICIES[policy])
    for max_messages in (None, 1, 2, 3):
        payload = render(document, max_messages=max_messages)
        parsed = validate(payload)
        text = "\n".join(line for message in parsed for line in message.lines)
        assert "【<业界新闻>】" in text
        assert "【空】" not in text
        assert "<at" not in text, "no text can mention a whole group"
        assert '<\u2060at user_id="all">所有人</at>' in text  # shown, defused
        assert "javascript:" not in " ".join(hrefs(parsed))
        assert not any(href.startswith("mailto:") for href in hrefs(parsed))
        assert primary_links(payload.document) - {news.url for news in document.quick_news} - {
            "https://example.com/" + "p" * 25_000
        } <= hrefs(parsed)
        check_sections(payload, parsed, document)
        if max_messages is not None:
            assert len(payload.messages) <= max_messages


def test_hostile_full_mode_shortens_only_what_cannot_fit_alone() -> None:
    document = document_of(hostile_issue(), POLICIES["tracked"])
    payload = render(document)
    parsed = validate(payload)
    items = payload.document.sections[0].items
    assert items[0].summary_text.endswith("…")
    assert EMOJI in items[0].summary_text
    assert items[3].summary == ()  # its 36 KB title alone is over the limit: summary gone, title cut
    assert items[3].title.endswith("…")
    assert items[1] == document.sections[0].items[1]  # short items untouched
    assert items[4].summary == document.sections[0].items[4].summary
    assert payload.document.lead is not None
    assert payload.document.lead.endswith("…")
    lines = [line for message in parsed for line in message.lines]
    assert "mail" in " ".join(lines)  # a mailto: link keeps its text, as text
    assert "line one" in lines  # a code block's lines are paragraphs
    assert "line two" in lines
    # Tracking turns the huge link into a short redirect; without it, the link goes, the title stays.
    untracked = render(document_of(hostile_issue(), POLICIES["no-public-url"]))
    huge = untracked.document.sections[0].items[5]
    assert huge.url is None
    assert huge.title == "huge link"
    validate(untracked)


def test_an_issue_with_hundreds_of_items_splits_into_valid_messages() -> None:
    items = tuple(
        item(n, f"条目 {n} <&>", f"https://example.com/{n}", "源", "摘要 " * 100) for n in range(1, 301)
    )
    issue = Issue(date=dt.date(2024, 1, 3), title="大", sections=(Section("多", 1, items),))
    document = document_of(issue, POLICIES["tracked"])
    payload = render(document)
    parsed = validate(payload)
    assert len(payload.messages) > 10
    assert primary_links(document) <= hrefs(parsed)
    check_sections(payload, parsed, document)
    check_splits(parsed)
    one = render(document, max_messages=1)
    (parsed_one,) = validate(one)
    assert one.document.sections[0].omitted > 0
    check_sections(one, [parsed_one], document)


def test_too_many_sections_for_the_budget_do_not_fit() -> None:
    sections = tuple(
        Section(f"栏目{n:03}" + "名" * 40, n, (item(1, "标" * 60, f"https://example.com/{n}"),))
        for n in range(1, 101)
    )
    document = document_of(
        Issue(date=dt.date(2024, 1, 4), title="多栏目", sections=sections), POLICIES["no-public-url"]
    )
    with pytest.raises(DoesNotFit):  # 100 long headers and 100 short titles are over 20 KB
        render(document, max_messages=1)
    parsed = validate(render(document, max_messages=2))
    assert len(parsed) == 2
    assert sum(line.startswith("【栏目") for message in parsed for line in message.lines) == 100
