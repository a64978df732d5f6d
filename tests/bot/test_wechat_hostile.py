"""/wechat against hostile requests: bad or missing signatures and replays (403, nothing processed), XML
bombs and external entities (400, nothing expanded or fetched), malformed XML (400), oversized bodies
(413), and hostile search text (a normal reply). One app serves the whole module: every case uses an
openid of its own, so "nothing processed" is checked per case."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.wechat.dialog import SORRY
from tests.bot.wechat_helpers import (
    WeChatService,
    assert_fits,
    copy_database,
    event_message,
    running_service,
    signed_query,
    text_message,
    wechat_demo_db,
)
from tests.fakes.wechat_api import running_fake_wechat

__all__ = ["wechat_demo_db"]  # a fixture, used by name

pytestmark = pytest.mark.asyncio(loop_scope="module")

_openids = (f"oHostileCase{number:017d}" for number in itertools.count())
_LINK = re.compile(r'<a href="([^"]*)">')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, wechat_demo_db: Path
) -> AsyncIterator[WeChatService]:
    folder = tmp_path_factory.mktemp("wechat_hostile")
    async with (
        running_fake_wechat() as fake,
        running_service(copy_database(wechat_demo_db, folder), fake) as service,
    ):
        yield service


@pytest.mark.parametrize(
    "query",
    [
        {"echostr": "echo-me"},
        {**signed_query(token="another-token"), "echostr": "echo-me"},
        {**signed_query(), "signature": "0" * 40, "echostr": "echo-me"},
        {**signed_query(timestamp=1714037059), "echostr": "echo-me"},
    ],
    ids=["missing", "other-token", "wrong", "stale"],
)
async def test_verification_with_a_bad_signature_is_403(
    service: WeChatService, query: dict[str, str]
) -> None:
    response = await service.client.get("/wechat", params=query)
    assert response.status == 403
    assert "echo-me" not in await response.text()


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">' for n in range(9))
    + "]><xml><ToUserName>gh</ToUserName><FromUserName>&j;</FromUserName></xml>"
)


def external_entity(target: str, openid: str) -> str:
    message = text_message("&x;", openid=openid).replace("<![CDATA[&x;]]>", "&x;")
    return f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "{target}">]>{message}'


def hostile_push(
    case: str, service: WeChatService, openid: str, secret_file: Path
) -> tuple[str | bytes, dict[str, str]]:
    follow = event_message("subscribe", openid=openid)
    now = int(signed_query()["timestamp"])
    if case == "no-signature":
        return follow, {"timestamp": str(now), "nonce": "1"}
    if case == "wrong-signature":
        return follow, {**signed_query(), "signature": "0" * 40}
    if case == "other-token":
        return follow, signed_query(token="another-token")
    if case == "replayed":
        return follow, signed_query(timestamp=now - 301)
    if case == "from-the-future":
        return follow, signed_query(timestamp=now + 301)
    if case == "billion-laughs":
        return BILLION_LAUGHS.replace("<ToUserName>", f"<ToUserName>{openid}"), signed_query()
    if case == "external-file":
        return external_entity(secret_file.as_uri(), openid), signed_query()
    if case == "external-url":
        return external_entity(f"{service.fake.url}/leak", openid), signed_query()
    if case == "malformed":
        return follow[:-10], signed_query()
    if case == "not-utf8":
        return follow.replace("subscribe", "订阅").encode("gbk"), signed_query()
    if case == "missing-fields":
        return "<xml><MsgType>event</MsgType><Event>subscribe</Event></xml>", signed_query()
    if case == "over-64-kb":
        return follow.replace("<EventKey>", "<EventKey>" + "x" * 70_000), signed_query()
    assert case == "over-1-mb"
    return follow.replace("<EventKey>", "<EventKey>" + "x" * 1_100_000), signed_query()


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no-signature", 403),
        ("wrong-signature", 403),
        ("other-token", 403),
        ("replayed", 403),
        ("from-the-future", 403),
        ("billion-laughs", 400),
        ("external-file", 400),
        ("external-url", 400),
        ("malformed", 400),
        ("not-utf8", 400),
        ("missing-fields", 400),
        ("over-64-kb", 413),
        ("over-1-mb", 413),
    ],
)
async def test_hostile_pushes_are_refused_with_nothing_processed(
    service: WeChatService, tmp_path: Path, case: str, status: int
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("TOP-SECRET-MARKER")
    openid = next(_openids)
    body, query = hostile_push(case, service, openid, secret_file)
    data = io.BytesIO(body.encode() if isinstance(body, str) else body)  # aiohttp warns about big bytes
    response = await service.client.post("/wechat", data=data, params=query)
    assert response.status == status
    text = await response.text()
    assert text.count("\n") <= 1
    assert "Traceback" not in text
    assert "TOP-SECRET-MARKER" not in text
    assert service.fake.paths == []  # no external entity fetched
    assert await service.status(openid) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "<a href='javascript:alert(1)'>点我</a>",
        "]]><xml><Content>injected</Content></xml>",
        "' OR 1=1; DROP TABLE subscriber; --",
        "量化" * 1000,
        "\u202e\u200b😀 %s %n {0} ${x}",
        'AND OR NOT ( ) " : * ^ ~ [ ] { } \\',
    ],
    ids=["empty", "blank", "html", "cdata-end", "sql", "long", "unicode", "query-syntax"],
)
async def test_hostile_search_text_gets_a_normal_reply(service: WeChatService, text: str) -> None:
    openid = next(_openids)
    reply = await service.say(text, openid=openid)
    assert_fits(reply)
    for url in _LINK.findall(reply):
        assert url.startswith("https://"), url
    assert "javascript:" not in reply
    assert "<xml>" not in reply
    assert await service.status(openid) is None  # nothing but a search happened


async def test_a_failure_behind_the_dialog_becomes_an_apology(
    service: WeChatService, caplog: pytest.LogCaptureFixture
) -> None:
    odd = "o-not-an-openid"  # the subscriber store refuses it: as any error inside the dialog would be
    assert await service.say("订阅", openid=odd) == SORRY
    assert await service.status(odd) is None
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("bot.wechat")]
    assert any("not answered" in line for line in logged)
    assert not any(odd in line for line in logged)
