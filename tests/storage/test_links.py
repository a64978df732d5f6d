from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from channels.links import LinkPolicy, LinkRewriter, tracking_token
from content.errors import BadInput
from storage.database import Database
from storage.links import LinkStore, TrackedLink

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
        ("sms", token_of(URL), URL),
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
