"""/wechat against hostile requests: bad or missing signatures and stale timestamps (403, nothing
processed), a signed URL replayed with a forged body (403, nobody's subscription changed) while WeChat's
byte-identical retries still get their reply, XML bombs and external entities (400, nothing expanded or
fetched), malformed XML and out-of-bounds fields (400, never a 500), oversized bodies (413), the echo of
the verification route, and hostile search text (a normal reply). One app serves the whole module: every
case uses an openid of its own, so "nothing processed" is checked per case."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.wechat import WECHAT
from bot.wechat.dialog import SORRY, SUBSCRIBED, WELCOME
from bot.wechat.protocol import PushMemory
from bot.wechat.webhook import MAX_ECHOSTR_CHARS
from storage.subscribers import SubscriberStatus
from tests.bot.wechat_helpers import (
    WeChatService,
    assert_fits,
    copy_database,
    decrypt,
    encrypted_push,
    event_message,
    reply_fields,
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


async def test_verification_echoes_only_a_short_echostr_as_plain_text(service: WeChatService) -> None:
    markup = "<script>alert(1)</script>"
    response = await service.client.get("/wechat", params=signed_query(echostr=markup))
    assert (response.status, await response.text()) == (200, markup)
    assert response.content_type == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = "<h1>" + "x" * MAX_ECHOSTR_CHARS + "</h1>"
    response = await service.client.get("/wechat", params=signed_query(echostr=page))
    assert response.status == 400
    assert page not in await response.text()


# --- a signed URL used again ------------------------------------------------------------------------


async def test_a_signed_url_replayed_with_a_forged_body_is_refused_and_changes_nobody(
    service: WeChatService,
) -> None:
    reader, victim, stranger = next(_openids), next(_openids), next(_openids)
    assert await service.event("subscribe", openid=victim) == WELCOME
    query = signed_query()  # captured from a log or the wire along with the reader's message
    captured = text_message("量化", openid=reader)
    assert (await service.push(captured, **query)).status == 200
    for forged in (
        event_message("subscribe", openid=stranger),
        text_message("订阅", openid=stranger),
        event_message("unsubscribe", openid=victim),
        text_message("退订", openid=victim),
        captured.replace("量化", "剪枝"),
    ):
        response = await service.push(forged, **query)
        assert response.status == 403
        assert "replay" in await response.text()
    assert await service.status(stranger) is None
    assert await service.status(victim) is SubscriberStatus.ACTIVE
    assert await service.status(reader) is None
    assert (await service.push(captured, **query)).status == 200  # the forgeries left no trace


@pytest.mark.parametrize(("kind", "expected"), [("text", SUBSCRIBED), ("event", WELCOME)])
async def test_a_byte_identical_retry_on_the_same_url_gets_the_same_reply(
    service: WeChatService, kind: str, expected: str
) -> None:
    openid = next(_openids)
    body = (
        text_message("订阅", openid=openid) if kind == "text" else event_message("subscribe", openid=openid)
    )
    query = signed_query()
    first = await service.push(body, **query)
    assert first.status == 200
    reply = await first.text()
    assert reply_fields(reply)["Content"] == expected
    retries = await asyncio.gather(*(service.push(body, **query) for _ in range(2)))
    assert [(response.status, await response.text()) for response in retries] == [(200, reply)] * 2
    assert await service.status(openid) is SubscriberStatus.ACTIVE


async def test_when_the_replay_memory_is_full_a_new_push_gets_503_and_a_retry_its_reply(
    service: WeChatService,
) -> None:
    assert service.client.app is not None
    state = service.client.app[WECHAT]
    kept, state.pushes = state.pushes, PushMemory(max_entries=1)
    try:
        first, second = next(_openids), next(_openids)
        body, query = event_message("subscribe", openid=first), signed_query()
        reply = await (await service.push(body, **query)).text()
        refused = await service.push(event_message("subscribe", openid=second))
        assert refused.status == 503
        assert await service.status(second) is None
        retry = await service.push(body, **query)
        assert (retry.status, await retry.text()) == (200, reply)
    finally:
        state.pushes = kept


async def test_safe_mode_takes_the_same_pair_again_only_for_the_same_message(
    tmp_path: Path, wechat_demo_db: Path
) -> None:
    reader, stranger = next(_openids), next(_openids)
    message = event_message("subscribe", openid=reader)
    async with (
        running_fake_wechat() as fake,
        running_service(copy_database(wechat_demo_db, tmp_path), fake, safe_mode=True) as safe,
    ):
        body, query = encrypted_push(message)
        stamp, nonce = int(query["timestamp"]), query["nonce"]
        first = await safe.push(body, **query)
        # WeChat's retry may be encrypted afresh: other bytes, the same message, the same reply.
        retry_body, retry_query = encrypted_push(message, timestamp=stamp, nonce=nonce)
        assert retry_body != body
        retry = await safe.push(retry_body, **retry_query)
        replies = [decrypt(reply_fields(await answer.text())["Encrypt"])[0] for answer in (first, retry)]
        assert replies[0] == replies[1]
        assert reply_fields(replies[0])["Content"] == WELCOME
        # Another message under the same pair needs the token to sign it, and still is not a retry.
        forged_body, forged_query = encrypted_push(
            event_message("subscribe", openid=stranger), timestamp=stamp, nonce=nonce
        )
        assert (await safe.push(forged_body, **forged_query)).status == 403
        assert await safe.status(stranger) is None
        assert await safe.status(reader) is SubscriberStatus.ACTIVE


# --- hostile bodies ---------------------------------------------------------------------------------


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
    if case == "create-time-5000-digits":
        return _with_create_time(follow, "9" * 5000), signed_query()
    if case == "create-time-13-digits":
        return _with_create_time(follow, "1" * 13), signed_query()
    if case == "msg-id-5000-digits":
        subscribe = text_message("订阅", openid=openid)
        return re.sub(r"<MsgId>\d+</MsgId>", f"<MsgId>{'7' * 5000}</MsgId>", subscribe), signed_query()
    if case == "openid-over-64":
        return follow.replace(openid, openid + "x" * 100), signed_query()
    if case == "event-over-64":
        return follow.replace("subscribe", "subscribe" + "x" * 100), signed_query()
    if case == "gbk-declared":
        declared = '<?xml version="1.0" encoding="gbk"?>' + follow.replace("subscribe", "订阅")
        return declared.encode("gbk"), signed_query()
    if case == "nul-byte":
        return follow.replace("subscribe", "sub\x00scribe"), signed_query()
    if case == "5000-deep":
        return follow.replace("<EventKey>", "<EventKey>" + "<a>" * 5000 + "</a>" * 5000), signed_query()
    if case == "5000-wide":
        return follow.replace("<EventKey>", "<EventKey>" + "<a/>" * 5000), signed_query()
    if case == "100000-children":
        return follow.replace("<EventKey>", "<EventKey>" + "<a/>" * 100_000), signed_query()
    if case == "over-64-kb":
        return follow.replace("<EventKey>", "<EventKey>" + "x" * 70_000), signed_query()
    assert case == "over-1-mb"
    return follow.replace("<EventKey>", "<EventKey>" + "x" * 1_100_000), signed_query()


def _with_create_time(message: str, created: str) -> str:
    return re.sub(r"<CreateTime>\d+</CreateTime>", f"<CreateTime>{created}</CreateTime>", message)


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
        ("create-time-5000-digits", 400),
        ("create-time-13-digits", 400),
        ("msg-id-5000-digits", 400),
        ("openid-over-64", 400),
        ("event-over-64", 400),
        ("gbk-declared", 400),
        ("nul-byte", 400),
        ("5000-deep", 400),
        ("5000-wide", 400),
        ("100000-children", 413),
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


async def test_an_xml_declaration_naming_another_encoding_is_read_as_utf_8(service: WeChatService) -> None:
    openid = next(_openids)
    declared = '<?xml version="1.0" encoding="x-bogus"?>' + text_message("订阅", openid=openid)
    response = await service.push(declared)  # was a 500: expat looked the codec up (LookupError)
    assert response.status == 200
    assert reply_fields(await response.text())["Content"] == SUBSCRIBED


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "<a href='javascript:alert(1)'>点我</a>",
        "]]><xml><Content>injected</Content></xml>",
        "' OR 1=1; DROP TABLE subscriber; --",
        "量化" * 1000,
        "量" * 20_000,  # 60 KB of UTF-8: as long as a push may be
        "\u202e\u200b😀 %s %n {0} ${x}",
        'AND OR NOT ( ) " : * ^ ~ [ ] { } \\',
    ],
    ids=["empty", "blank", "html", "cdata-end", "sql", "long", "60-kb", "unicode", "query-syntax"],
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
