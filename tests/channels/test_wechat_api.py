"""The WeChat REST client against the fake WeChat API server: tokens (cached, renewed on 40001/42001),
customer-service messages and the error codes mapped to exceptions."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from channels.wechat.api import (
    TOKEN_MARGIN_SECONDS,
    AlreadySent,
    BadOpenid,
    CredentialError,
    MessageTooLong,
    NotFollowing,
    OutsideWindow,
    QuotaExhausted,
    RecipientError,
    WeChatApi,
    WeChatUnreachable,
)
from tests.bot.wechat_helpers import USER
from tests.fakes.wechat_api import APPID, SECRET, TOKEN_LIFETIME_SECONDS, FakeWeChatApi, fake_wechat

__all__ = ["fake_wechat"]  # the fixture, used by name

SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client(session: aiohttp.ClientSession, fake: FakeWeChatApi, **overrides: object) -> WeChatApi:
    options: dict[str, object] = {"base_url": fake.url, "appid": APPID, "secret": SECRET, **overrides}
    return WeChatApi(session, **options)  # type: ignore[arg-type]


async def test_a_token_is_fetched_once_and_reused(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    api = client(session, fake_wechat)
    await api.send_text(USER, "第一条")
    await api.send_text(USER, '第二条 <a href="https://example.com">链接</a>')
    assert fake_wechat.texts_to(USER) == ["第一条", '第二条 <a href="https://example.com">链接</a>']
    assert fake_wechat.token_requests == [False]


async def test_a_token_is_renewed_before_it_expires(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    now = [1000.0]
    api = client(session, fake_wechat, clock=lambda: now[0])
    await api.send_text(USER, "一")
    now[0] += TOKEN_LIFETIME_SECONDS - TOKEN_MARGIN_SECONDS - 1
    await api.send_text(USER, "二")
    assert fake_wechat.token_requests == [False]
    now[0] += 2
    fake_wechat.expire_tokens()  # as WeChat would by now
    await api.send_text(USER, "三")
    assert fake_wechat.token_requests == [False, False]
    assert fake_wechat.texts_to(USER) == ["一", "二", "三"]


async def test_an_expired_token_is_replaced_and_the_call_retried(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    api = client(session, fake_wechat)
    await api.send_text(USER, "一")
    fake_wechat.expire_tokens()
    await api.send_text(USER, "二")
    assert fake_wechat.token_requests == [False, False]  # normal mode hands out a new token
    assert fake_wechat.texts_to(USER) == ["一", "二"]


async def test_a_token_invalidated_early_is_force_refreshed(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    api = client(session, fake_wechat)
    await api.send_text(USER, "一")
    fake_wechat.invalidate_token()  # 40001, and normal mode still hands out the same token
    await api.send_text(USER, "二")
    assert fake_wechat.token_requests == [False, False, True]
    assert fake_wechat.texts_to(USER) == ["一", "二"]


@pytest.mark.parametrize(
    ("arrange", "openid", "text", "error", "code"),
    [
        ("outside_window", USER, "迟到的回答", OutsideWindow, 45015),
        ("not_following", USER, "迟到的回答", NotFollowing, 43004),
        (None, "not-an-openid", "迟到的回答", BadOpenid, 40003),
        (None, USER, "长" * 683, MessageTooLong, 45002),  # 2049 bytes of UTF-8
    ],
)
async def test_send_errors_are_mapped(
    session: aiohttp.ClientSession,
    fake_wechat: FakeWeChatApi,
    arrange: str | None,
    openid: str,
    text: str,
    error: type[Exception],
    code: int,
) -> None:
    if arrange:
        getattr(fake_wechat, arrange).add(USER)
    with pytest.raises(error) as raised:
        await client(session, fake_wechat).send_text(openid, text)
    assert raised.value.code == code  # type: ignore[attr-defined]
    assert isinstance(raised.value, RecipientError) == (code != 45002)
    assert fake_wechat.received == []


async def test_exactly_2048_bytes_are_accepted(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    await client(session, fake_wechat).send_text(USER, "长" * 682 + "ab")
    assert len(fake_wechat.texts_to(USER)[0].encode()) == 2048


async def test_a_wrong_secret_is_a_credential_error(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    with pytest.raises(CredentialError) as raised:
        await client(session, fake_wechat, secret="wrong").send_text(USER, "x")
    assert raised.value.code == 40125
    assert "wrong" not in str(raised.value)


async def test_an_unreachable_api_is_reported_without_the_token(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    api = client(session, fake_wechat)
    token = await api.access_token()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    api._base_url = closed  # the same client, its server gone
    with pytest.raises(WeChatUnreachable) as raised:
        await api.send_text(USER, "x")
    assert token not in str(raised.value)
    assert SEND in str(raised.value)


async def test_mass_sends_are_deduplicated_and_limited(
    session: aiohttp.ClientSession, fake_wechat: FakeWeChatApi
) -> None:
    api = client(session, fake_wechat)
    article = {"title": "嵌入式AI简报", "content": "<p>正文</p>", "thumb_media_id": "thumb-1"}
    draft = await api.call("/cgi-bin/draft/add", {"articles": [article]})
    send = {"filter": {"is_to_all": True}, "mpnews": {"media_id": draft["media_id"]}, "msgtype": "mpnews"}
    answer = await api.call("/cgi-bin/message/mass/sendall", {**send, "clientmsgid": "issue-2021-08-01"})
    assert answer["msg_id"]
    with pytest.raises(AlreadySent):
        await api.call("/cgi-bin/message/mass/sendall", {**send, "clientmsgid": "issue-2021-08-01"})
    with pytest.raises(QuotaExhausted):
        await api.call("/cgi-bin/message/mass/sendall", {**send, "clientmsgid": "issue-2021-08-15"})
    assert [call.path for call in fake_wechat.received] == [
        "/cgi-bin/draft/add",
        "/cgi-bin/message/mass/sendall",
    ]
