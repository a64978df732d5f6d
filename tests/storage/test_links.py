from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from channels.links import LinkPolicy, LinkRewriter, tracking_token
from content.errors import BadInput
from storage.database import Database
from storage.links import LinkStore, TrackedLink
from tests.storage.recorded_sql import recorded_sql, selects, writes

DAY = dt.date(2021, 7, 18)
SECRET = b"test secret key"
URL = "https://arxiv.org/abs/2106.08295"


@pytest.fixture
def links(db: Database) -> LinkStore:
    return LinkStore(db)


def token_of(url: str, channel: str = "telegram") -> str:
    return tracking_token(SECRET, channel, DAY, url)


async def test_remembered_links_resolve_and_count_clicks(links: LinkStore) -> None:
    token = token_of(URL)
    await links.remember("telegram", DAY, [(token, URL)])

    assert await links.clicks(token) == 0
    assert await links.resolve(token) == URL
    assert await links.resolve(token) == URL
    assert await links.clicks(token) == 2


async def test_click_returns_the_channel_for_the_metrics(links: LinkStore) -> None:
    token = token_of(URL, "email")
    await links.remember("email", DAY, [(token, URL)])

    assert await links.click(token) == TrackedLink(token, "email", DAY, URL, 1)
    assert await links.find(token) == TrackedLink(token, "email", DAY, URL, 1)  # find counts nothing


async def test_unknown_and_malformed_tokens_resolve_to_nothing(links: LinkStore) -> None:
    await links.remember("telegram", DAY, [(token_of(URL), URL)])

    for token in (token_of("https://evil.example/"), "", "A" * 16, "../../etc/passwd", "x" * 10_000, "'; --"):
        assert await links.resolve(token) is None
        assert await links.clicks(token) == 0


async def test_remember_is_idempotent_and_keeps_the_clicks(links: LinkStore) -> None:
    token = token_of(URL)
    await links.remember("telegram", DAY, [(token, URL)])
    await links.resolve(token)

    await links.remember("telegram", DAY, [(token, URL), (token, URL)])
    await links.remember("telegram", DAY, [])

    assert await links.clicks(token) == 1
    assert await links.resolve(token) == URL


async def test_a_rendered_issue_links_are_remembered_as_the_rewriter_made_them(links: LinkStore) -> None:
    policy = LinkPolicy(channel="wechat", public_url="https://jianbao.example", tracking=True, secret=SECRET)
    rewriter = LinkRewriter(policy, DAY)
    shown = [rewriter.rewrite(url) for url in (URL, "https://github.com/pytorch/pytorch")]

    await links.remember(
        "wechat", DAY, [(link.token, link.original) for link in rewriter.links if link.token]
    )

    for rendered, original in zip(shown, (URL, "https://github.com/pytorch/pytorch"), strict=True):
        assert rendered is not None
        assert await links.resolve(rendered.rsplit("/", 1)[1]) == original


async def test_concurrent_clicks_are_all_counted(links: LinkStore) -> None:
    token = token_of(URL)
    await links.remember("telegram", DAY, [(token, URL)])

    await asyncio.gather(*(links.resolve(token) for _ in range(20)))

    assert await links.clicks(token) == 20


@pytest.mark.parametrize(
    ("channel", "token", "url"),
    [
        ("no such name", token_of(URL), URL),  # not a name any channel can have
        ("telegram", "not a token!", URL),
        ("telegram", token_of("javascript:alert(1)"), "javascript:alert(1)"),
        ("telegram", token_of("mailto:x@example.com"), "mailto:x@example.com"),
    ],
)
async def test_remember_refuses_what_must_never_be_a_redirect_target(
    links: LinkStore, channel: str, token: str, url: str
) -> None:
    with pytest.raises(BadInput):
        await links.remember(channel, DAY, [(token, url)])
    assert await links.resolve(token) is None


async def test_an_unknown_token_costs_a_read_not_a_write(db: Database, links: LinkStore) -> None:
    known = token_of(URL)
    await links.remember("telegram", DAY, [(known, URL)])

    with recorded_sql(db) as unknown:
        assert await links.click(token_of("https://never.example/")) is None
    with recorded_sql(db) as clicked:
        assert await links.click(known) == TrackedLink(known, "telegram", DAY, URL, 1)

    assert writes(unknown) == []
    assert "BEGIN IMMEDIATE" not in unknown
    assert len(selects(unknown)) == 1
    assert [statement.split()[0] for statement in writes(clicked)] == ["UPDATE"]


async def test_an_unknown_token_is_answered_while_another_process_writes(tmp_path: Path) -> None:
    """SQLite has one write lock: /r/ of a made-up token must not queue for it (it did, for the 30 s busy
    timeout, and then failed)."""
    path = tmp_path / "links.db"
    async with Database(f"sqlite:///{path}") as database:
        await database.migrate()
        links = LinkStore(database)
        await links.remember("email", DAY, [(token_of(URL, "email"), URL)])
        with closing(sqlite3.connect(path, isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")
            assert await links.click(token_of("https://never.example/")) is None
            assert await links.find(token_of(URL, "email")) is not None
            writer.execute("ROLLBACK")


async def test_the_archive_pages_links_are_remembered_on_channel_web(links: LinkStore) -> None:
    token = token_of(URL, "web")
    await links.remember("web", DAY, [(token, URL)])

    assert await links.click(token) == TrackedLink(token, "web", DAY, URL, 1)
