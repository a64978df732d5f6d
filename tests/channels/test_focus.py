"""A reader's "你关注的" block (channels/document.py with_focus): first in every channel's payload, title
and link only, within each platform's limits, and fitted as the first section."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from channels.document import FOCUS_SECTION, IssueDocument, build_document, summary_parser, with_focus
from channels.email.render import render_email
from channels.feishu.render import render_feishu
from channels.links import LinkPolicy, LinkRewriter
from channels.telegram.payload import TELEGRAM_MAX_TEXT
from channels.telegram.render import render_telegram
from channels.wechat.render import render_wechat
from channels.wecom.render import render_wecom
from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file

GOLDEN = Path(__file__).parent / "golden"
MD = summary_parser()
POLICY = LinkPolicy("telegram", public_url="https://jianbao.example")
ISSUE = parse_issue(read_issue_file(demo_issue_dir() / "2021-08-01.md"))
# Two items of different sections: the first item of the second section and the third of the first.
PICKS = ((1, 0), (0, 2))


def document(policy: LinkPolicy = POLICY) -> IssueDocument:
    return build_document(ISSUE, LinkRewriter(policy, ISSUE.date), MD)


def picked_titles() -> list[str]:
    return [ISSUE.sections[section].items[item].title for section, item in sorted(PICKS)]


def test_with_focus_puts_the_picked_items_first_by_title_and_link_only() -> None:
    plain = document()
    focused = with_focus(plain, sorted(PICKS))
    block = focused.sections[0]
    assert block.name == FOCUS_SECTION
    assert block.focus
    assert [item.title for item in block.items] == picked_titles()
    assert all(item.summary == () and item.source is None and item.tags == () for item in block.items)
    assert [item.url for item in block.items] == [
        plain.sections[section].items[item].url for section, item in sorted(PICKS)
    ]
    assert focused.sections[1:] == plain.sections
    # The block repeats items: counts and archive anchors are the issue's own.
    assert focused.item_count == plain.item_count
    assert focused.section_url(focused.sections[1]) == "https://jianbao.example/issues/2021-08-01#section-1"
    assert focused.section_url(block) == "https://jianbao.example/issues/2021-08-01"


def test_no_picks_or_picks_outside_the_issue_leave_the_document_as_it_is() -> None:
    plain = document()
    assert with_focus(plain, ()) is plain
    assert with_focus(plain, ((99, 0), (0, 999))) is plain


@pytest.mark.parametrize("channel", ["telegram", "wecom", "feishu"])
def test_message_channels_show_the_block_right_after_the_header(channel: str) -> None:
    renderers = {"telegram": render_telegram, "wecom": render_wecom, "feishu": render_feishu}
    payload = renderers[channel](with_focus(document(LinkPolicy(channel)), PICKS))
    text = json.dumps(payload.to_dict(), ensure_ascii=False)
    first_title = picked_titles()[0]
    at = text.index(FOCUS_SECTION)
    assert at < text.index("热身小新闻")
    assert at < text.index(ISSUE.sections[0].name)
    assert at < text.index(first_title)
    # The picked items appear twice: in the block and in their own section.
    assert text.count(first_title) == 2


def test_email_shows_the_block_before_the_quick_news_in_both_parts() -> None:
    payload = render_email(
        with_focus(document(LinkPolicy("email", public_url="https://jianbao.example")), PICKS),
        mail_from="简报 <news@jianbao.example>",
    )
    for part in (payload.html, payload.text):
        at = part.index(FOCUS_SECTION)
        assert at < part.index("热身小新闻")
        assert at < part.index(ISSUE.sections[0].name)
        for title in picked_titles():
            assert part.find(title, at) > at
    # The preheader still summarises the issue, not the block.
    assert FOCUS_SECTION not in payload.html.split("</div>", 1)[0]


def test_wechat_article_and_text_open_with_the_block() -> None:
    payload = render_wechat(with_focus(document(LinkPolicy("wechat")), PICKS))
    assert payload.article.content.index(FOCUS_SECTION) < payload.article.content.index("热身小新闻")
    title_line, block_line = payload.text.split("\n")[0], payload.text.split("\n")[2]
    assert title_line.startswith("嵌入式AI简报")
    assert FOCUS_SECTION in block_line


def test_a_block_too_big_for_one_message_is_fitted_as_the_first_section() -> None:
    every_item = tuple(
        (section, item) for section, found in enumerate(ISSUE.sections) for item in range(len(found.items))
    )
    payload = render_telegram(with_focus(document(), every_item), max_messages=1)
    (message,) = payload.messages
    assert len(message.text) <= TELEGRAM_MAX_TEXT
    assert message.text.index(FOCUS_SECTION) < message.text.index(ISSUE.sections[0].name)
    # Trimmed like any section, and every section of the issue keeps its place after it.
    block = message.text[message.text.index(FOCUS_SECTION) : message.text.index(ISSUE.sections[0].name)]
    assert ISSUE.sections[0].items[0].title[:10] in block
    positions = [message.text.index(f"【{section.name}") for section in ISSUE.sections if section.items]
    assert positions == sorted(positions)


def test_golden_telegram_payload_with_a_block_in_one_message() -> None:
    payload = render_telegram(with_focus(document(), PICKS), max_messages=1)
    golden = GOLDEN / "telegram-2021-08-01-focus-one-message.json"
    if os.environ.get("JIANBAO_REGENERATE_GOLDEN"):
        golden.write_text(
            json.dumps(payload.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    assert payload.to_dict() == json.loads(golden.read_text(encoding="utf-8"))
