"""The fake WeCom server answers raw HTTP as the robot webhook does (shape, codes, hint), whatever client."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fakes.faults import FaultPlan
from tests.fakes.wecom_api import KEY, OTHER_KEY, FakeWeCom


async def post(fake: FakeWeCom, query: str, data: bytes | str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/cgi-bin/webhook/send{query}", data=data) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_success_and_refusals_come_in_the_robot_shape(fake_wecom: FakeWeCom) -> None:
    body = '{"msgtype": "markdown", "markdown": {"content": "\\u7b80\\u62a5"}}'  # \\u escapes are fine
    assert await post(fake_wecom, f"?key={KEY}", body) == (200, {"errcode": 0, "errmsg": "ok"})
    assert fake_wecom.contents(KEY) == ["简报"]
    status, answer = await post(fake_wecom, "?key=nope", body)
    assert status == 200
    assert answer["errcode"] == 93000
    assert answer["errmsg"].startswith("invalid webhook url, hint: [")
    assert answer["errmsg"].endswith("more info at https://open.work.weixin.qq.com/devtool/query?e=93000")


@pytest.mark.parametrize(
    ("query", "data", "code"),
    [
        ("", '{"msgtype": "text", "text": {"content": "x"}}', 93000),
        (f"?key={KEY}&key={OTHER_KEY}", '{"msgtype": "text", "text": {"content": "x"}}', 93000),
        (f"?key={KEY}", "{not json", 40058),
        (f"?key={KEY}", "[1, 2]", 40058),
        (f"?key={KEY}", '{"msgtype": "markdown", "markdown": {"content": ""}}', 44004),
        (f"?key={KEY}", '{"msgtype": "text", "text": {"content": "' + "a" * 2049 + '"}}', 40058),
        (f"?key={KEY}", '{"msgtype": "markdown", "markdown": {"content": "' + "a" * 4097 + '"}}', 40058),
        (f"?key={KEY}", '{"msgtype": "html", "html": {"content": "x"}}', 40008),
    ],
)
async def test_what_the_robot_refuses(fake_wecom: FakeWeCom, query: str, data: str, code: int) -> None:
    status, answer = await post(fake_wecom, query, data)
    assert status == 200
    assert answer["errcode"] == code
    assert fake_wecom.error_codes() == [code]
    assert fake_wecom.accepted == {}


async def test_other_paths_and_methods_are_not_the_hook(fake_wecom: FakeWeCom) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake_wecom.url}/cgi-bin/webhook/upload_media?key={KEY}", data=b"{}") as r:
            assert r.status == 404
        async with session.get(f"{fake_wecom.url}/cgi-bin/webhook/send?key={KEY}") as r:
            assert r.status == 405
    assert fake_wecom.received == []


async def test_an_unknown_fault_is_refused(fake_wecom: FakeWeCom) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake_wecom.faults(FaultPlan(rates={"429": 0.5}))
