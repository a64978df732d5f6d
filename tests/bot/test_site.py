"""The service's public site over HTTP: health, metrics, the archive, the feed, errors without traces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.settings import Settings


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


async def test_search_route_rejects_bad_numbers(demo_client: TestClient[object, object]) -> None:
    response = await demo_client.get("/search", params={"q": "量化", "limit": "ten"})
    assert response.status == 400
    assert await response.text() == "limit and offset must be whole numbers\n"
