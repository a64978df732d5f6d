"""The parser: whole-structure goldens of real issues, unseen issues, and each convention on its own."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from content.errors import IssueFormatError
from content.model import Issue
from content.parser import parse_issue
from content.source import decode_issue, read_issue_file
from tests.content.corpus import corpus_dir

HERE = Path(__file__).parent
GOLDEN = sorted((HERE / "golden").glob("*.json"))
UNSEEN = sorted((HERE / "unseen").glob("*.expected.json"))


def parse_text(text: str, path: str | None = None) -> Issue:
    return parse_issue(decode_issue(text.encode("utf-8"), path))


def comparable(issue: Issue) -> dict[str, Any]:
    data = issue.to_dict()
    del data["source_path"], data["content_hash"]
    return data


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda path: path.stem)
def test_golden_whole_structure(golden: Path) -> None:
    """Reviewed by hand once; any change to what the parser reads from these issues shows here."""
    issue = parse_issue(read_issue_file(corpus_dir() / f"{golden.stem}.md"))
    assert comparable(issue) == json.loads(golden.read_text(encoding="utf-8"))


def test_goldens_cover_the_format_drift() -> None:
    assert {path.stem for path in GOLDEN} >= {"2019-03-31", "2020-03-02", "2021-01-05", "2021-08-01"}


@pytest.mark.parametrize("expected_path", UNSEEN, ids=lambda path: path.name.split(".")[0])
def test_unseen_issue(expected_path: Path) -> None:
    """Issues written for these tests in the family's formats, with hand-written expectations."""
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    issue = parse_issue(read_issue_file(expected_path.with_name(expected_path.name.split(".")[0] + ".md")))
    assert issue.date.isoformat() == expected["date"]
    assert (issue.title, issue.headline, issue.tagline) == (
        expected["title"],
        expected["headline"],
        expected["tagline"],
    )
    assert (issue.lead is not None) == expected["has_lead"]
    if expected["has_lead"]:
        assert (issue.lead == "") == expected["lead_empty"]
    assert [news.url for news in issue.quick_news] == [news["url"] for news in expected["quick_news"]]
    assert [link.text for link in issue.references] == expected["references"]
    got = [
        {
            "name": section.name,
            "items": [
                {
                    key: value
                    for key, value in item.to_dict().items()
                    if key in ("title", "source", "url", "tags", "fields")
                }
                for item in section.items
            ],
        }
        for section in issue.sections
    ]
    assert got == expected["sections"]


# --- conventions, one at a time --------------------------------------------------------------------

HEAD = "# 嵌入式AI简报 (2021-09-02)\n\n"


def one_item(line: str, body: str = "") -> dict[str, Any]:
    issue = parse_text(f"{HEAD}## 论文\n\n- {line}\n{body}")
    data: dict[str, Any] = issue.sections[0].items[0].to_dict()
    return data


@pytest.mark.parametrize(
    ("line", "title", "headline"),
    [
        ("# 嵌入式AI简报 (2021-01-05) 骁龙480/微信AI超分", "嵌入式AI简报 (2021-01-05)", "骁龙480/微信AI超分"),
        ("# 嵌入式AI简报 (2021-01-05)：上海张江GPGPU", "嵌入式AI简报 (2021-01-05)", "上海张江GPGPU"),
        ("# 嵌入式AI简报 (2021-01-05)：", "嵌入式AI简报 (2021-01-05)", None),
        ("# 嵌入式AI简报（2021-01-05）  ", "嵌入式AI简报（2021-01-05）", None),
        ("# Edge AI Weekly (2021-01-05): INT4 everywhere", "Edge AI Weekly (2021-01-05)", "INT4 everywhere"),
    ],
)
def test_title_line_and_headline(line: str, title: str, headline: str | None) -> None:
    issue = parse_text(f"{line}\n\n## 论文\n- x\n")
    assert (issue.title, issue.headline, issue.date) == (title, headline, dt.date(2021, 1, 5))


def test_date_falls_back_to_the_file_name() -> None:
    issue = parse_text("# 嵌入式AI简报 特别版\n\n## 论文\n- x\n", path="issues/2020-02-29.md")
    assert (issue.date, issue.title) == (dt.date(2020, 2, 29), "嵌入式AI简报 特别版")


def test_tags_title_source_and_secondary_links() -> None:
    item = one_item(
        "[2006.16669] [CVPR2020] [低比特**EasyQuant** | NeuralTalk](https://a.example/1) [[原文]](https://b.example/2)"
    )
    assert item["tags"] == ["2006.16669", "CVPR2020"]
    assert (item["title"], item["source"], item["url"]) == (
        "低比特EasyQuant",
        "NeuralTalk",
        "https://a.example/1",
    )
    assert [link["url"] for link in item["links"]] == ["https://a.example/1", "https://b.example/2"]


def test_source_is_after_the_last_bar() -> None:
    item = one_item("[TVM | Relay 走读 | 知乎](https://z.example/p)")
    assert (item["title"], item["source"]) == ("TVM | Relay 走读", "知乎")


def test_bold_head_and_empty_link() -> None:
    item = one_item("**[端侧大模型 | 量子位]()**")
    assert (item["title"], item["source"], item["url"], item["links"]) == ("端侧大模型", "量子位", None, [])


def test_item_without_link() -> None:
    item = one_item("[MobiSys 2021] 高通发布新NPU | 芯东西")
    assert (item["tags"], item["title"], item["source"], item["url"]) == (
        ["MobiSys 2021"],
        "高通发布新NPU",
        "芯东西",
        None,
    )


def test_fields_then_summary_with_nested_list() -> None:
    body = (
        "标题：EasyQuant: Post-training Quantization  \n"
        "代码: https://github.com/deepglint/EasyQuant  \n"
        "AI方面：这不是字段，是摘要前的正文。  \n"
        "摘要：第一行  \n"
        "链接：https://x.example/after-summary-stays-text  \n"
        "    1. 第一点\n"
        "    2. 第二点\n"
    )
    item = one_item("[EasyQuant | NeuralTalk](https://a.example/1)  ", body)
    assert item["fields"] == {
        "标题": "EasyQuant: Post-training Quantization",
        "代码": "https://github.com/deepglint/EasyQuant",
    }
    assert item["summary"] == (
        "AI方面：这不是字段，是摘要前的正文。\n第一行\n链接：https://x.example/after-summary-stays-text\n"
        "  1. 第一点\n  2. 第二点"
    )


def test_summary_label_without_colon() -> None:
    item = one_item("[x | y](https://a.example/)", "摘要华米发布黄山2S芯片。\n")
    assert item["summary"] == "华米发布黄山2S芯片。"


def test_bare_url_ends_before_chinese_text() -> None:
    item = one_item("[x](https://a.example/)", "代码：https://github.com/a/b。中文说明\n")
    assert item["fields"]["代码"] == "https://github.com/a/b。中文说明"
    assert [link["url"] for link in item["links"]] == ["https://a.example/", "https://github.com/a/b"]


def test_en_dash_bullets_quick_news_notes_lead_and_tagline() -> None:
    text = (
        f"---\nlayout: default\n---\n\n{HEAD}"
        "**关注模型压缩、低比特量化**  \n<font>注：PC端请用手机打开</font>\n\n"
        "> 导读：本次2条。\n【论文】量化。\n\n"
        "先是一些热身小新闻：\n\n– 高通：发布骁龙8；\n- [联发科天玑](https://m.example/1)；\n\n"
        "> 注：个别链接打不开\n\n## 业界新闻\n\n- [a](https://a.example/)\n\n## 论文\n\n- [b](https://b.example/)\n"
    )
    issue = parse_text(text)
    assert issue.tagline == "关注模型压缩、低比特量化"
    assert issue.lead == "本次2条。\n【论文】量化。"
    assert [(news.text, news.url) for news in issue.quick_news] == [
        ("高通：发布骁龙8；", None),
        ("联发科天玑；", "https://m.example/1"),
    ]
    assert issue.notes == ("注：PC端请用手机打开", "注：个别链接打不开")
    assert [section.name for section in issue.sections] == ["业界新闻", "论文"]


def test_archive_gives_references_and_footer_is_not_content() -> None:
    text = (
        f"{HEAD}## 博文\n\n- [a](https://a.example/)\n\n"
        "## [往期回顾](https://github.com/ysh329/awesome-embedded-ai)\n\n"
        "| 2 | 0 | 2 | 1 |\n|:---:|:---:|:---:|:---:|\n"
        "| [2021-08-01](../embedded-ai-report/2021-08-01.md) | [2021-07-18](../embedded-ai-report/2021-07-18.md) | | |\n\n"
        "----\n\n- WeChat: NeuralTalk\n- Editor: https://github.com/ysh329\n"
    )
    issue = parse_text(text)
    assert [(section.name, len(section.items)) for section in issue.sections] == [("博文", 1)]
    assert [(link.text, link.url) for link in issue.references] == [
        ("2021-08-01", "../embedded-ai-report/2021-08-01.md"),
        ("2021-07-18", "../embedded-ai-report/2021-07-18.md"),
    ]


def test_a_rule_ends_the_section_content() -> None:
    issue = parse_text(f"{HEAD}## 博文\n\n- [a](https://a.example/)\n\n----\n\n- Editor: someone\n")
    assert [len(section.items) for section in issue.sections] == [1]


def test_numbered_list_at_column_zero_continues_the_item_above() -> None:
    issue = parse_text(
        f"{HEAD}## 开源项目\n\n- [mbed-os](https://g.example/)  \n摘要：includes:  \n1. Security.  \n2. Cloud.\n- [next](https://n.example/)\n"
    )
    items = issue.sections[0].items
    assert [item.title for item in items] == ["mbed-os", "next"]
    assert items[0].summary == "includes:\n1. Security.\n2. Cloud."


def test_empty_section_is_kept() -> None:
    issue = parse_text(f"{HEAD}## 论文\n\n- [a](https://a.example/)\n\n## 博文\n\n")
    assert [(section.name, len(section.items)) for section in issue.sections] == [("论文", 1), ("博文", 0)]


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ("just some words\n\n- a list\n", "no title line", None),
        ("## 论文\n- x\n", "no title line", None),
        ("# 嵌入式AI简报 (2021-01-05)\n\n正文而已。\n", "no sections", 1),
        ("# 嵌入式AI简报 没有日期\n\n## 论文\n- x\n", "no date in the title line", 1),
        ("\n\n# 嵌入式AI简报 (2021-02-30)\n\n## 论文\n- x\n", "date '2021-02-30' does not exist", 3),
    ],
)
def test_not_an_issue(text: str, reason: str, line: int | None) -> None:
    with pytest.raises(IssueFormatError, match=reason) as caught:
        parse_text(text)
    assert "\n" not in str(caught.value)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ") == (line is not None)


def test_items_without_a_first_line_are_named_by_their_text_and_empty_bullets_dropped() -> None:
    issue = parse_text(f"{HEAD}## 论文\n\n- - 嵌套的条目\n- \n- > 引用的条目\n")
    assert [item.title for item in issue.sections[0].items] == ["嵌套的条目", "引用的条目"]
    assert [item.position for item in issue.sections[0].items] == [1, 2]
