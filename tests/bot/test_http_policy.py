"""What every exchange gets: security headers, no versions in Server, no-store on token pages, a deadline
for bodies that trickle in, and logs that name the route, never the path (paths hold tokens)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.http_policy import BODY_DEADLINE, CONTENT_SECURITY_POLICY
from bot.services import SERVICES
from bot.settings import Settings
from bot.tokens import Purpose, SubscriberTokens
from content.parser import parse_issue
from content.source import decode_issue
from tests.bot.helpers import minimal_issue, sqlite_url

SECRET_KEY = "http-policy-tests-secret-key-0123456789"
ADMIN = "http-policy-tests-admin-token-0123456789"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "policy.db"),
        public_url="https://jb.example",
        secret_key=SECRET_KEY,
        admin_token=ADMIN,
    )
    app = create_app(settings)
    app[BODY_DEADLINE] = 0.5
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        source = minimal_issue("2021-07-18")
        await client.app[SERVICES].storage.issues.save(parse_issue(decode_issue(source.encode())), source)
        yield client


async def raw_exchange(client: TestClient[Any, Any], request: bytes, *, wait: float = 5.0) -> bytes:
    """Send bytes as they are (a header aiohttp's client would refuse to send) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), wait)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/issues", "/issues/2021-07-18", "/unsubscribe/not-a-token"])
async def test_html_pages_forbid_scripts_framing_and_sniffing(
    client: TestClient[Any, Any], path: str
) -> None:
    response = await client.get(path)
    assert response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none' covers scripts: none at all
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "<style" not in await response.text()  # the CSP allows no inline style: it comes from /static


async def test_the_style_sheet_is_served_from_static(client: TestClient[Any, Any]) -> None:
    response = await client.get("/static/site.css")
    assert response.status == 200
    assert "font-family" in await response.text()
    assert (await client.get("/static/")).status in (403, 404)  # no directory listing
    assert (await client.get("/static/../site/base.html.j2")).status == 404


@pytest.mark.parametrize("path", ["/healthz", "/issues", "/search?q=x", "/no-such-page", "/feed.xml"])
async def test_the_server_header_names_no_versions(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path)
    assert response.headers["Server"] == "jianbao"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_pages_whose_url_holds_a_token_are_never_cached(client: TestClient[Any, Any]) -> None:
    services = client.app[SERVICES]
    subscriber, _ = await services.subscribers.subscribe("email", "reader@example.com", confirmed=True)
    tokens = SubscriberTokens(SECRET_KEY)
    now = dt.datetime.now(dt.UTC)
    for path in (
        f"/unsubscribe/{tokens.make(Purpose.UNSUBSCRIBE, subscriber, now)}",
        f"/confirm/{tokens.make(Purpose.CONFIRM, subscriber, now)}",
        "/unsubscribe/garbled",
        "/r/abcdefghijklmnop",
    ):
        response = await client.get(path, allow_redirects=False)
        assert response.headers.get("Cache-Control") == "no-store", path
    assert "Cache-Control" not in (await client.get("/issues")).headers


async def test_a_body_that_trickles_in_is_cut_off_with_408(client: TestClient[Any, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(
            b"POST /api/broadcasts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()

        async def trickle() -> None:
            for _ in range(99):
                await asyncio.sleep(0.2)
                writer.write(b" ")
                await writer.drain()

        dripping = asyncio.create_task(trickle())
        try:
            # 0.5 s deadline in this app; without one the server would wait the whole 20 s of dripping.
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"Connection: close" in answer


async def test_a_body_that_arrives_in_time_is_answered_as_usual(client: TestClient[Any, Any]) -> None:
    # One-click unsubscribe (RFC 8058) never reads its body: a body that arrived whole but unread is no
    # reason for a 408.
    services = client.app[SERVICES]
    subscriber, _ = await services.subscribers.subscribe("email", "reader@example.com", confirmed=True)
    token = SubscriberTokens(SECRET_KEY).make(Purpose.UNSUBSCRIBE, subscriber, dt.datetime.now(dt.UTC))
    answer = await raw_exchange(
        client,
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n".encode()
        + b"Connection: close\r\n\r\nList-Unsubscribe=One-Click",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    answer = await raw_exchange(
        client,
        b"POST /unsubscribe/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\nConnection: close\r\n\r\n"
        b"List-Unsubscribe=One-Click",
    )
    assert answer.startswith(b"HTTP/1.1 400")  # the token's answer: the body deadline let it through


async def test_a_failure_is_logged_by_route_never_by_path(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    services = client.app[SERVICES]
    subscriber, _ = await services.subscribers.subscribe("email", "reader@example.com", confirmed=True)
    token = SubscriberTokens(SECRET_KEY).make(Purpose.UNSUBSCRIBE, subscriber, dt.datetime.now(dt.UTC))
    await services.storage.database.close()  # every query now fails: a 5xx, logged
    with caplog.at_level(logging.ERROR):
        response = await client.post(f"/unsubscribe/{token}")
    assert response.status >= 500
    assert "Traceback" not in await response.text()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/unsubscribe/{token}" in logged
    assert token not in caplog.text


async def _throttled_after_ten(client: TestClient[Any, Any], first: str, then: str) -> int:
    wrong = {"Authorization": "Bearer " + "w" * 40}
    for _ in range(10):
        assert (await client.get("/api/status", headers=wrong | {"X-Forwarded-For": first})).status == 401
    return (await client.get("/api/status", headers=wrong | {"X-Forwarded-For": then})).status


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(tmp_path: Path) -> None:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "proxy.db"), admin_token=ADMIN, trusted_proxies="127.0.0.0/8"
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        assert await _throttled_after_ten(client, "203.0.113.5", "203.0.113.6") == 401  # another client
        assert await _throttled_after_ten(client, "203.0.113.7", "203.0.113.7") == 429
        # What the client wrote itself (left of the hop our proxy added) is not believed.
        assert await _throttled_after_ten(client, "198.51.100.1, 203.0.113.8", "9.9.9.9, 203.0.113.8") == 429


async def test_without_trusted_proxies_forwarded_headers_are_ignored(client: TestClient[Any, Any]) -> None:
    assert await _throttled_after_ten(client, "203.0.113.5", "203.0.113.6") == 429  # all one peer: 127.0.0.1


def test_a_trusted_proxy_setting_that_is_not_an_address_stops_the_app() -> None:
    with pytest.raises(ValueError, match=r"JIANBAO_TRUSTED_PROXIES: 'proxy\.local' is not an address"):
        create_app(Settings(trusted_proxies="127.0.0.1, proxy.local"))


async def test_a_405_says_which_methods_the_resource_takes(client: TestClient[Any, Any]) -> None:
    for path in ("/api/broadcasts", "/issues"):
        response = await client.put(path)
        assert response.status == 405
        assert response.headers["Allow"], path
        assert "Traceback" not in await response.text()
