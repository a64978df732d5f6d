"""The service's public site over HTTP: health, metrics, the archive, the feed, errors without traces."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.services import SERVICES
from bot.settings import Settings
from storage.search.results import MAX_LIMIT, MAX_OFFSET
from tests.storage.recorded_sql import recorded_sql, writes


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'site.db'}", public_url="https://jb.example")
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def demo_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[object, object]]:
    """The embedded default: no database URL, so a SQLite file under ./var with the demo issues."""
    monkeypatch.chdir(tmp_path)
    async with TestClient(TestServer(create_app(Settings()))) as client:
        yield client


async def test_the_embedded_default_serves_the_demo_issues(demo_client: TestClient[object, object]) -> None:
    response = await demo_client.get("/healthz")
    assert response.status == 200
    health = await response.json()
    assert (health["status"], health["issues"], health["items"]) == ("ok", 32, 541)
    assert health["channels"]["telegram"].startswith("off")
    assert Path("var/jianbao.db").is_file()  # noqa: ASYNC240 - a one-off check, not a hot path


async def test_an_empty_configured_database_stays_empty(client: TestClient[object, object]) -> None:
    assert (await (await client.get("/healthz")).json())["issues"] == 0
    page = await client.get("/issues")
    assert "还没有内容" in await page.text()


async def test_archive_issue_page_and_feed(demo_client: TestClient[object, object]) -> None:
    archive = await (await demo_client.get("/issues")).text()
    assert archive.count('href="/issues/') == 32
    page = await demo_client.get("/issues/2020-07-02")
    assert page.status == 200
    html = await page.text()
    for anchor, name in ((1, "业界新闻"), (2, "论文"), (3, "开源项目"), (4, "博文")):
        assert f'<h2 id="section-{anchor}">{name}</h2>' in html
    assert "EasyQuant" in html
    assert "<script" not in html
    feed = await demo_client.get("/feed.xml")
    assert feed.content_type == "application/atom+xml"
    root = ElementTree.fromstring(await feed.text())
    entries = root.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 20
    assert entries[0].find("{http://www.w3.org/2005/Atom}id").text.endswith("/issues/2021-08-01")  # type: ignore[union-attr]


async def test_pages_link_to_the_routes_they_name(demo_client: TestClient[object, object]) -> None:
    home = await demo_client.get("/", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (302, "/issues")
    archive = await (await demo_client.get("/issues")).text()
    links = set(re.findall(r'href="([^"]+)"', archive))
    assert {"/static/site.css", "/feed.xml", "/issues", "/issues/2020-07-02"} <= links
    for link in links:  # every link of ours leads to a page
        assert (await demo_client.get(link)).status == 200, link


async def test_the_feed_links_under_the_public_url_and_its_path(tmp_path: Path) -> None:
    """A public URL with a path (a proxy serving the site under /jianbao/) keeps it in absolute links."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'site.db'}", public_url="https://jb.example/jianbao/"
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        feed = ElementTree.fromstring(await (await client.get("/feed.xml")).text())
    atom = "{http://www.w3.org/2005/Atom}"
    assert feed.findtext(f"{atom}id") == "https://jb.example/jianbao/issues"
    assert [(link.get("rel"), link.get("href")) for link in feed.findall(f"{atom}link")] == [
        ("self", "https://jb.example/jianbao/feed.xml"),
        ("alternate", "https://jb.example/jianbao/issues"),
    ]
    assert feed.findtext(f"{atom}updated") == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/issues/1999-01-01", 404), ("/issues/not-a-date", 404), ("/no/such/route", 404), ("/issues/%00", 404)],
)
async def test_errors_are_one_line_without_a_trace(
    demo_client: TestClient[object, object], path: str, status: int
) -> None:
    response = await demo_client.get(path)
    assert response.status == status
    body = await response.text()
    assert body.count("\n") <= 1
    assert "Traceback" not in body


async def test_wrong_method_is_405(demo_client: TestClient[object, object]) -> None:
    assert (await demo_client.post("/healthz")).status == 405


async def test_metrics_count_requests_per_route(demo_client: TestClient[object, object]) -> None:
    await demo_client.get("/issues/2020-07-02")
    await demo_client.get("/issues/1999-01-01")
    text = await (await demo_client.get("/metrics")).text()
    assert 'jianbao_http_requests_total{route="/issues/{date}",status="200"} 1.0' in text
    assert 'jianbao_http_requests_total{route="/issues/{date}",status="404"} 1.0' in text
    assert "jianbao_http_request_seconds_bucket" in text


async def test_search_route(demo_client: TestClient[object, object]) -> None:
    response = await demo_client.get("/search", params={"q": "量化", "limit": "3"})
    data = await response.json()
    assert data["query"] == "量化"
    assert len(data["results"]) == 3
    assert {"date", "section", "title", "url", "snippet", "score"} <= data["results"][0].keys()


@pytest.mark.parametrize("query", ["", "C++", "title:x", '"', "NOT", "*", "10%", "🚀", "量" * 800, "\x00"])
async def test_search_route_answers_hostile_queries(
    demo_client: TestClient[object, object], query: str
) -> None:
    response = await demo_client.get("/search", params={"q": query})
    assert response.status == 200
    data = await response.json()
    assert data["results"] or data["hint"]


async def test_a_query_longer_than_a_request_line_is_refused_cleanly(
    demo_client: TestClient[object, object],
) -> None:
    """10,000 characters URL-encode to 90 KB, over aiohttp's 8 KB request line: a 4xx, never a trace."""
    response = await demo_client.get("/search", params={"q": "量" * 10_000})
    assert 400 <= response.status < 500
    assert "Traceback" not in await response.text()


OFFSET_RANGE = f"offset must be a whole number from 0 to {MAX_OFFSET}\n"
LIMIT_RANGE = f"limit must be a whole number from 1 to {MAX_LIMIT}\n"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # 10**10 made tantivy allocate 160 GB (the process aborted); 2**63-1 overflowed inside it (a panic
        # that dropped the connection past the error middleware).
        ("offset=10000000000", OFFSET_RANGE),
        ("offset=9223372036854775807", OFFSET_RANGE),
        ("offset=" + "9" * 5000, OFFSET_RANGE),
        (f"offset={MAX_OFFSET + 1}", OFFSET_RANGE),
        ("offset=1e23", OFFSET_RANGE),
        ("offset=2.5", OFFSET_RANGE),
        ("offset=-5", OFFSET_RANGE),
        ("offset=%2B5", OFFSET_RANGE),  # +5
        ("offset=%205", OFFSET_RANGE),  # " 5"
        ("offset=1_000", OFFSET_RANGE),
        ("offset=%EF%BC%95", OFFSET_RANGE),  # a full-width ５, which int() reads as 5
        ("offset=", OFFSET_RANGE),
        ("limit=0", LIMIT_RANGE),
        (f"limit={MAX_LIMIT + 1}", LIMIT_RANGE),
        ("limit=ten", LIMIT_RANGE),
        ("limit=-1", LIMIT_RANGE),
        ("offset=0&offset=10", "offset must be given once, not 2 times\n"),
        ("limit=5&limit=50", "limit must be given once, not 2 times\n"),
        ("q=%E5%89%AA%E6%9E%9D", "q must be given once, not 2 times\n"),  # a second q, 剪枝
    ],
)
async def test_search_refuses_numbers_out_of_range_with_one_line(
    demo_client: TestClient[object, object], query: str, message: str
) -> None:
    response = await demo_client.get(f"/search?q=%E9%87%8F%E5%8C%96&{query}")  # q=量化
    assert response.status == 400
    assert await response.text() == message


async def test_search_answers_at_its_bounds(demo_client: TestClient[object, object]) -> None:
    widest = await demo_client.get("/search", params={"q": "量化", "limit": str(MAX_LIMIT)})
    assert len((await widest.json())["results"]) == MAX_LIMIT
    furthest = await demo_client.get("/search", params={"q": "量化", "offset": str(MAX_OFFSET)})
    data = await furthest.json()
    assert (furthest.status, data["results"], data["total"] > 0) == (200, [], True)
    padded = await demo_client.get("/search", params={"q": "量化", "limit": "003", "offset": "0"})
    assert len((await padded.json())["results"]) == 3


@pytest.mark.parametrize(
    "date", ["99999-01-01", "20200702", "2020-W27-4", "2020-07-02T00:00", "0000-01-01", "2020-02-30"]
)
async def test_an_issue_page_has_one_address(demo_client: TestClient[object, object], date: str) -> None:
    """Only YYYY-MM-DD: fromisoformat alone served 2020-07-02 also as /issues/20200702 and 2020-W27-4."""
    response = await demo_client.get(f"/issues/{date}")
    assert response.status == 404
    assert await response.text() == f"no issue dated {date!r}\n"


# --- tracking links on the archive pages ------------------------------------------------------------

PUBLIC = "https://jb.example"
TRACKED_ISSUE = "2020-07-02"
_HREF = re.compile(r'href="([^"]+)"')


async def _issue_page_links(settings: Settings) -> list[str]:
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get(f"/issues/{TRACKED_ISSUE}")
        assert response.status == 200
        return _HREF.findall(await response.text())


@pytest.fixture
async def tracking_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[object, object], dict[str, str]]]:
    """The demo with click tracking on, and the original URL each /r/ link on the issue page stands for
    (read from the same page rendered with tracking off: the same links in the same order)."""
    monkeypatch.chdir(tmp_path)
    untracked = await _issue_page_links(Settings(public_url=PUBLIC))
    tracking = Settings(public_url=PUBLIC, track_links=True, secret_key="a test secret key for tokens")
    async with TestClient(TestServer(create_app(tracking))) as client:
        response = await client.get(f"/issues/{TRACKED_ISSUE}")
        tracked = _HREF.findall(await response.text())
        assert len(tracked) == len(untracked)
        originals = {
            shown.removeprefix(f"{PUBLIC}/r/"): original
            for shown, original in zip(tracked, untracked, strict=True)
            if shown.startswith(f"{PUBLIC}/r/")
        }
        yield client, originals


async def test_every_tracked_link_on_an_issue_page_redirects_to_its_url(
    tracking_client: tuple[TestClient[object, object], dict[str, str]],
) -> None:
    client, originals = tracking_client
    assert len(originals) > 20
    for token, original in originals.items():
        response = await client.get(f"/r/{token}", allow_redirects=False)
        assert response.status == 302, original
        assert response.headers["Location"] == original
    links = client.app[SERVICES].links
    assert {(await links.find(token)).channel for token in originals} == {"web"}  # type: ignore[union-attr]


async def test_an_issue_page_stores_its_links_once(
    tracking_client: tuple[TestClient[object, object], dict[str, str]],
) -> None:
    client, _ = tracking_client
    with recorded_sql(client.app[SERVICES].storage.database) as statements:
        assert (await client.get(f"/issues/{TRACKED_ISSUE}")).status == 200
    assert writes(statements) == []


async def test_an_unknown_tracking_token_is_a_404_without_a_write(
    tracking_client: tuple[TestClient[object, object], dict[str, str]],
) -> None:
    """While another connection holds SQLite's write lock, /r/ of a token never stored still answers at
    once: it only reads (it took the write lock, and waited out the 30 s busy timeout, before)."""
    client, originals = tracking_client
    with closing(sqlite3.connect("var/jianbao.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        response = await client.get("/r/aaaaaaaaaaaaaaaa", allow_redirects=False)
        assert (response.status, await response.text()) == (404, "unknown link\n")
        other.execute("ROLLBACK")
    known = next(iter(originals))
    assert (await client.get(f"/r/{known}", allow_redirects=False)).status == 302
