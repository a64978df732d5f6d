"""The fake WeChat API's injected faults, mass-send checks and delivery accounting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.faults import FaultPlan
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, MassSend, running_fake_wechat

USER = "oUser0123456789abcdefghijklmnop"


class Client:
    """Just enough of a WeChat client to call the fake: a token, then JSON posts."""

    def __init__(self, session: aiohttp.ClientSession, fake: FakeWeChatApi) -> None:
        self.session, self.fake, self.token = session, fake, ""

    async def call(self, path: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        if not self.token and path != "/cgi-bin/stable_token":
            answer = await self.call(
                "/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
            )
            self.token = answer["access_token"]
        url = f"{self.fake.url}{path}?access_token={self.token}"
        async with self.session.post(url, json=payload, **options) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            return body

    async def text(self, openid: str, content: str, **options: Any) -> dict[str, Any]:
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        return await self.call("/cgi-bin/message/custom/send", payload, **options)

    async def draft(self) -> str:
        article = {"title": "简报", "content": "<p>正文</p>", "thumb_media_id": "thumb-1"}
        answer = await self.call("/cgi-bin/draft/add", {"articles": [article]})
        return str(answer["media_id"])

    async def sendall(self, media_id: str, clientmsgid: str, **options: Any) -> dict[str, Any]:
        payload = {
            "filter": {"is_to_all": True},
            "mpnews": {"media_id": media_id},
            "msgtype": "mpnews",
            "send_ignore_reprint": 0,
            "clientmsgid": clientmsgid,
        }
        return await self.call("/cgi-bin/message/mass/sendall", payload, **options)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChatApi]:
    async with running_fake_wechat() as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeWeChatApi) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, fake)


async def test_a_closed_window_is_45015(client: Client, fake: FakeWeChatApi) -> None:
    assert (await client.text(USER, "早"))["errcode"] == 0
    fake.window_closed(USER)
    assert (await client.text(USER, "晚"))["errcode"] == 45015
    assert fake.delivered() == {(USER, "早"): 1}


async def test_injected_errors_send_nothing(client: Client, fake: FakeWeChatApi) -> None:
    await client.draft()  # gets the token before the plan is in place
    fake.faults(FaultPlan(rates={"45009": 1.0}))
    assert await client.text(USER, "一") == {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
    fake.faults(FaultPlan(rates={"-1": 1.0}))
    assert (await client.text(USER, "二"))["errcode"] == -1
    fake.faults(FaultPlan(rates={"500": 1.0}))
    async with client.session.post(
        f"{fake.url}/cgi-bin/message/custom/send", json={"touser": USER}
    ) as response:
        assert response.status == 500
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()  # a gateway's page, not a WeChat answer
    fake.faults(FaultPlan(rates={"drop": 1.0}))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.text(USER, "三")
    assert fake.delivered() == {}
    assert [fault for fault, _ in fake.injected] == ["45009", "-1", "500", "drop"]
    assert fake.stats()["injected"] == {"45009": 1, "-1": 1, "500": 1, "drop": 1}


async def test_a_slow_sendall_is_sent_and_its_retry_is_45065(client: Client, fake: FakeWeChatApi) -> None:
    media_id = await client.draft()
    fake.mass_quota = 2
    fake.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=0.3))
    with pytest.raises(asyncio.TimeoutError):
        await client.sendall(media_id, "issue-2025-06-01", timeout=aiohttp.ClientTimeout(total=0.1))
    fake.faults(None)
    retry = await client.sendall(media_id, "issue-2025-06-01")
    assert retry["errcode"] == 45065  # the broadcast went out once, although the sender saw a timeout
    assert [(send.clientmsgid, send.media_id) for send in fake.mass_sends] == [("issue-2025-06-01", media_id)]
    assert isinstance(fake.mass_sends[0], MassSend)
    assert fake.mass_quota == 1


async def test_mass_send_checks(client: Client, fake: FakeWeChatApi) -> None:
    media_id = await client.draft()
    assert (await client.sendall("media-unknown", "a"))["errcode"] == 40007
    assert (await client.sendall(media_id, "a"))["errcode"] == 0
    assert (await client.sendall(media_id, "b"))["errcode"] == 45028  # one a day
    async with client.session.get(f"{fake.url}/_fake/stats") as response:
        stats = await response.json()
    assert stats["mass_sends"] == [["a", media_id]]
    assert stats["errors"] == 2
    assert "/_fake/stats" not in fake.paths


async def test_mass_quota_can_be_given_at_start() -> None:
    assert FakeWeChatApi(mass_quota=0).mass_quota == 0
