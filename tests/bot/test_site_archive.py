"""The public archive for readers: the issue page (contents, anchors, every link of an item, dark mode),
the search page beside the JSON answer, and the feed with issue dates, leads and a topic filter.

Most tests run on two small issues written here, so that whole outputs can be compared: one about 量化
with an item whose title carries markup, one about gardening, which no reader of 量化 wants.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.importing import import_paths
from bot.services import open_storage
from bot.settings import Settings
from bot.site_search import highlighted
from tests.bot.helpers import sqlite_url

PUBLIC = "https://jb.example"
ATOM = "{http://www.w3.org/2005/Atom}"
QUANT = """# 嵌入式AI简报 (2024-01-05)：量化专题

**关注模型压缩、低比特量化**

> 导读：本期讲 **量化**，还有[一篇论文](https://example.com/lead)。

## 论文

- [2401.00001] [低比特量化的新方法 | arXiv](https://example.com/paper-page)
代码：https://github.com/example/quant
论文：https://arxiv.org/abs/2401.00001
摘要：一种量化方法，INT8 推理更快。
- [量化 \\<script\\>alert(1)\\</script\\> 注意 | 博客](https://example.com/hostile)
摘要：标题里有 \\<b\\>标记\\</b\\> 的量化文章。

## 开源项目

- [quant-tool：一个量化工具](https://github.com/example/tool)
摘要：把模型量化到 INT4。
"""
GARDEN = """# 嵌入式AI简报 (2024-02-09)：园艺

> 导读：本期只谈种番茄。

## 业界新闻

- [阳台上种番茄 | 园艺周刊](https://example.com/tomato)
摘要：浇水、施肥与搭架子。
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    folder = tmp_path / "issues"
    folder.mkdir()
    (folder / "2024-01-05.md").write_text(QUANT, encoding="utf-8")
    (folder / "2024-02-09.md").write_text(GARDEN, encoding="utf-8")
    settings = Settings(database_url=sqlite_url(tmp_path / "archive.db"), public_url=PUBLIC)
    async with open_storage(settings) as storage:
        report = await import_paths([folder], storage.issues)
        assert len(report.imported) == 2
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


# --- the issue page ---------------------------------------------------------------------------------


async def test_the_issue_page_has_contents_anchors_and_every_link(client: TestClient[object, object]) -> None:
    html = await (await client.get("/issues/2024-01-05")).text()
    toc = html[html.index('<nav class="toc"') : html.index("</nav>")]
    assert re.findall(r'<li><a href="(#section-\d)">([^<]+)</a> <span class="count">(\d) 条</span>', toc) == [
        ("#section-1", "论文", "2"),
        ("#section-2", "开源项目", "1"),
    ]
    assert re.findall(r'<li class="item" id="([^"]+)">', html) == ["item-1-1", "item-1-2", "item-2-1"]
    assert '<h2 id="section-1">论文</h2>' in html
    first = html[html.index('id="item-1-1"') : html.index('id="item-1-2"')]
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a> <span class="host">([^<]+)</span>', first) == [
        ("https://example.com/paper-page", "原文", "example.com"),
        ("https://github.com/example/quant", "代码", "github.com"),
        ("https://arxiv.org/abs/2401.00001", "论文", "arxiv.org"),
    ]
    assert '<a href="https://example.com/paper-page">低比特量化的新方法</a>' in first


async def test_the_issue_page_escapes_markup_in_items(client: TestClient[object, object]) -> None:
    html = await (await client.get("/issues/2024-01-05")).text()
    assert "<script" not in html
    assert "量化 &lt;script&gt;alert(1)&lt;/script&gt; 注意" in html


async def test_the_extra_links_are_tracked_and_redirect(tmp_path: Path) -> None:
    """With click tracking every link an item shows is a stored /r/ link, the paper and code ones too."""
    folder = tmp_path / "issues"
    folder.mkdir()
    (folder / "2024-01-05.md").write_text(QUANT, encoding="utf-8")
    settings = Settings(
        database_url=sqlite_url(tmp_path / "tracked.db"),
        public_url=PUBLIC,
        track_links=True,
        secret_key="a test secret key for the archive",
    )
    async with open_storage(settings) as storage:
        await import_paths([folder], storage.issues)
    async with TestClient(TestServer(create_app(settings))) as client:
        html = await (await client.get("/issues/2024-01-05")).text()
        first = html[html.index('id="item-1-1"') : html.index('id="item-1-2"')]
        shown = re.findall(r'<a href="([^"]+)">[^<]+</a> <span class="host">', first)
        assert len(shown) == 3
        targets = []
        for link in shown:
            assert link.startswith(f"{PUBLIC}/r/")
            response = await client.get(link.removeprefix(PUBLIC), allow_redirects=False)
            assert response.status == 302
            targets.append(response.headers["Location"])
    assert targets == [
        "https://example.com/paper-page",
        "https://github.com/example/quant",
        "https://arxiv.org/abs/2401.00001",
    ]


async def test_the_style_sheet_has_a_dark_mode_and_cjk_typography(client: TestClient[object, object]) -> None:
    css = await (await client.get("/static/site.css")).text()
    dark = css[css.index("@media (prefers-color-scheme: dark)") :]
    assert "--page:" in dark
    assert "--text:" in dark
    assert "font-size: 17px" in css
    assert "line-height: 1.8" in css
    assert "38em" in css
    assert '"PingFang SC"' in css
    assert '"Noto Sans CJK SC"' in css


async def test_every_archive_page_has_the_search_box(client: TestClient[object, object]) -> None:
    box = '<form class="search" role="search" method="get" action="/search">'
    for path in ("/issues", "/issues/2024-01-05", "/search?format=html"):
        assert box in await (await client.get(path)).text(), path


# --- search: HTML or JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "kind"),
    [
        ({}, "", "application/json"),
        ({"Accept": "*/*"}, "", "application/json"),
        ({"Accept": "application/json"}, "", "application/json"),
        ({"Accept": "text/html, application/json"}, "", "application/json"),  # a tie: as before
        ({"Accept": "application/json;q=0.5, text/html"}, "", "text/html"),
        (BROWSER, "", "text/html"),
        (BROWSER, "&format=json", "application/json"),
        ({}, "&format=html", "text/html"),
        ({"Accept": "text/html;q=0, */*"}, "", "application/json"),
    ],
)
async def test_search_answers_browsers_with_a_page_and_clients_with_json(
    client: TestClient[object, object], headers: dict[str, str], query: str, kind: str
) -> None:
    response = await client.get(f"/search?q=%E9%87%8F%E5%8C%96{query}", headers=headers)
    assert (response.status, response.content_type) == (200, kind)
    assert response.headers["Vary"] == "Accept"


async def test_an_unknown_format_is_refused_in_one_line(client: TestClient[object, object]) -> None:
    response = await client.get("/search?q=x&format=xml")
    assert (response.status, await response.text()) == (400, "format must be one of json, html\n")


async def test_the_search_page_links_each_hit_to_its_item(client: TestClient[object, object]) -> None:
    html = await (await client.get("/search", params={"q": "量化工具"}, headers=BROWSER)).text()
    results = html[html.index('<ol class="results"') : html.index("</ol>")]
    assert re.findall(r'<h2><a href="([^"]+)">', results)[0] == "/issues/2024-01-05#item-2-1"
    assert '<p class="meta">2024-01-05 · 开源项目</p>' in results


async def test_the_search_page_marks_words_and_escapes_markup(client: TestClient[object, object]) -> None:
    html = await (await client.get("/search", params={"q": "<script>量化"}, headers=BROWSER)).text()
    assert "<script" not in html
    assert 'value="&lt;script&gt;量化"' in html
    hostile = re.search(r'<h2><a href="/issues/2024-01-05#item-1-2">(.*?)</a></h2>', html)
    assert hostile is not None
    # "script" is one of the words searched for: marked inside the escaped text, never markup itself.
    assert hostile.group(1) == (
        "<mark>量化</mark> &lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt; 注意"
    )


@pytest.mark.parametrize(
    ("text", "words", "shown"),
    [
        ("INT8 量化与 int8", ("int8", "量化"), "<mark>INT8</mark> <mark>量化</mark>与 <mark>int8</mark>"),
        ("<b>量化</b>", ("量化",), "&lt;b&gt;<mark>量化</mark>&lt;/b&gt;"),
        ("a<mark>b", ("<mark>",), "a<mark>&lt;mark&gt;</mark>b"),
        ("低比特量化", ("量化", "低比特量化"), "<mark>低比特量化</mark>"),
        ("Int8 v2", ("8", "2", "v"), "Int8 v2"),  # lone letters and digits stay plain
        ("无关", (), "无关"),
    ],
)
def test_highlighting_marks_only_matched_words(text: str, words: tuple[str, ...], shown: str) -> None:
    assert str(highlighted(text, words)) == shown


@pytest.mark.parametrize(
    ("text", "words", "query", "shown"),
    [
        # A lone CJK character that a longer matched word holds is not marked on its own,
        ("最大化的量化", ("量化", "化"), "", "最大化的<mark>量化</mark>"),
        # nor where this item matched only the piece of a word the reader typed whole,
        ("模型优化工具", ("化",), "量化", "模型优化工具"),
        ("模型优化工具", ("化",), "INT8 量化", "模型优化工具"),
        # but it is when the reader asked for it alone.
        ("最大化", ("化",), "化", "最大<mark>化</mark>"),
        ("最大化", ("化",), "", "最大<mark>化</mark>"),
    ],
)
def test_a_lone_cjk_character_is_marked_only_when_asked_for_alone(
    text: str, words: tuple[str, ...], query: str, shown: str
) -> None:
    assert str(highlighted(text, words, query)) == shown


def _page_links(page: str) -> list[tuple[str, str]]:
    return [(rel, unescape(href)) for rel, href in re.findall(r'<a rel="(prev|next)" href="([^"]+)">', page)]


async def test_the_search_page_pages_through_results(client: TestClient[object, object]) -> None:
    first = await (await client.get("/search", params={"q": "量化", "limit": "1"}, headers=BROWSER)).text()
    assert _page_links(first) == [("next", "/search?q=%E9%87%8F%E5%8C%96&limit=1&offset=1")]
    second = await (
        await client.get("/search", params={"q": "量化", "limit": "1", "offset": "1"}, headers=BROWSER)
    ).text()
    assert _page_links(second) == [
        ("prev", "/search?q=%E9%87%8F%E5%8C%96&limit=1"),
        ("next", "/search?q=%E9%87%8F%E5%8C%96&limit=1&offset=2"),
    ]
    total = int(re.search(r"共找到 (\d+) 条", second).group(1))  # type: ignore[union-attr]
    last = await (
        await client.get(
            "/search", params={"q": "量化", "limit": "1", "offset": str(total - 1)}, headers=BROWSER
        )
    ).text()
    assert [rel for rel, _ in _page_links(last)] == ["prev"]


async def test_the_search_page_hints_when_nothing_is_found(client: TestClient[object, object]) -> None:
    html = await (await client.get("/search", params={"q": "区块链"}, headers=BROWSER)).text()
    assert (
        '<p class="hint" role="status">没有找到相关条目，换个说法试试，例如：量化、剪枝、编译器</p>' in html
    )
    assert '<ol class="results"' not in html


async def test_an_empty_query_shows_the_box_alone(client: TestClient[object, object]) -> None:
    html = await (await client.get("/search", headers=BROWSER)).text()
    assert 'name="q" value=""' in html
    assert 'class="hint"' not in html
    assert '<ol class="results"' not in html


@pytest.mark.parametrize("query", ["\x00", "<svg onload=alert(1)>", "量" * 800, '"><mark>'])
async def test_the_search_page_survives_hostile_queries(
    client: TestClient[object, object], query: str
) -> None:
    response = await client.get("/search", params={"q": query}, headers=BROWSER)
    assert response.status == 200
    html = await response.text()
    assert "<svg" not in html
    assert '"><mark>' not in html


async def test_the_search_page_refuses_bad_numbers_in_one_line(client: TestClient[object, object]) -> None:
    response = await client.get("/search?q=x&offset=-1", headers=BROWSER)
    assert (response.status, await response.text()) == (400, "offset must be a whole number from 0 to 1000\n")


# --- the feed ---------------------------------------------------------------------------------------

FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>嵌入式AI简报</title>
  <id>https://jb.example/issues</id>
  <link rel="self" href="https://jb.example/feed.xml"/>
  <link rel="alternate" href="https://jb.example/issues"/>
  <updated>2024-02-09T00:00:00+00:00</updated>
  <author><name>嵌入式AI简报</name></author>

  <entry>
    <title>嵌入式AI简报 (2024-02-09) 园艺</title>
    <id>https://jb.example/issues/2024-02-09</id>
    <link rel="alternate" href="https://jb.example/issues/2024-02-09"/>
    <published>2024-02-09T00:00:00+00:00</published>
    <updated>2024-02-09T00:00:00+00:00</updated>
    <summary>本期只谈种番茄。</summary>
  </entry>

  <entry>
    <title>嵌入式AI简报 (2024-01-05) 量化专题</title>
    <id>https://jb.example/issues/2024-01-05</id>
    <link rel="alternate" href="https://jb.example/issues/2024-01-05"/>
    <published>2024-01-05T00:00:00+00:00</published>
    <updated>2024-01-05T00:00:00+00:00</updated>
    <summary>本期讲 量化，还有一篇论文。</summary>
  </entry>

</feed>"""


async def test_the_feed_dates_entries_by_their_issue_and_sums_them_up_by_the_lead(
    client: TestClient[object, object],
) -> None:
    response = await client.get("/feed.xml")
    assert response.content_type == "application/atom+xml"
    assert await response.text() == FEED


async def test_the_feed_of_a_topic_keeps_the_issues_about_it(client: TestClient[object, object]) -> None:
    response = await client.get("/feed.xml", params={"topic": "量化"})
    feed = ElementTree.fromstring(await response.text())
    assert feed.findtext(f"{ATOM}title") == "嵌入式AI简报 · 量化"
    assert feed.findtext(f"{ATOM}id") == "https://jb.example/feed.xml?topic=%E9%87%8F%E5%8C%96"
    assert feed.findtext(f"{ATOM}updated") == "2024-01-05T00:00:00+00:00"
    entries = feed.findall(f"{ATOM}entry")
    assert [entry.findtext(f"{ATOM}id") for entry in entries] == ["https://jb.example/issues/2024-01-05"]
    garden = ElementTree.fromstring(await (await client.get("/feed.xml", params={"topic": "番茄"})).text())
    assert [entry.findtext(f"{ATOM}published") for entry in garden.findall(f"{ATOM}entry")] == [
        "2024-02-09T00:00:00+00:00"
    ]


async def test_the_feed_of_a_topic_uses_the_search_too(client: TestClient[object, object]) -> None:
    """quantization is not in the issue's words, but the search's glossary takes it to 量化, as the
    broadcast's topic rule does."""
    feed = ElementTree.fromstring(
        await (await client.get("/feed.xml", params={"topic": "quantization"})).text()
    )
    ids = [entry.findtext(f"{ATOM}id") for entry in feed.findall(f"{ATOM}entry")]
    assert ids == ["https://jb.example/issues/2024-01-05"]


@pytest.mark.parametrize("topic", ["", "   ", "量" * 33, "a\x00b", "tab\there", "\u200b"])
async def test_a_bad_topic_is_refused_in_one_line(client: TestClient[object, object], topic: str) -> None:
    response = await client.get("/feed.xml", params={"topic": topic})
    assert (response.status, await response.text()) == (400, "topic must be 1 to 32 printable characters\n")


async def test_a_topic_is_given_once(client: TestClient[object, object]) -> None:
    response = await client.get("/feed.xml?topic=a&topic=b")
    assert (response.status, await response.text()) == (400, "topic must be given once, not 2 times\n")


async def test_the_demo_feed_is_dated_by_its_issues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with TestClient(TestServer(create_app(Settings()))) as demo:
        feed = ElementTree.fromstring(await (await demo.get("/feed.xml")).text())
    entries = feed.findall(f"{ATOM}entry")
    published = [entry.findtext(f"{ATOM}published") or "" for entry in entries]
    dates = [(entry.findtext(f"{ATOM}id") or "").rsplit("/", 1)[1] for entry in entries]
    assert [moment[:10] for moment in published] == dates
    assert feed.findtext(f"{ATOM}updated") == published[0] == "2021-08-01T00:00:00+00:00"


def test_a_latin_word_is_marked_only_whole() -> None:
    marked = highlighted("TensorFlow 的 low bit 量化，Int8量化 <b>", ["low", "量化", "int8"])
    assert str(marked) == (
        "TensorFlow 的 <mark>low</mark> bit <mark>量化</mark>，<mark>Int8</mark><mark>量化</mark> &lt;b&gt;"
    )
